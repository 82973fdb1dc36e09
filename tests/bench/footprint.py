"""Footprint benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.footprint [--idle 20] [--runs 3]

Starts the product as a child process on the simulator and reports the time from process
start to ready and the resident memory after it has idled. Two shapes:

- console: ``run_bot.py --console`` (ready = the console's first line);
- bot: the Discord bot as the container runs it (engine, cogs, alert router, scheduler, all
  started by ``setup_hook``), minus the gateway login, which cannot happen here (no
  internet); ready = setup_hook returned.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BOT_SCRIPT = """
import asyncio, sys
from config import load_settings
from engine.app import build_app
from bot.bot import TradingBot
from bot.runner import wire_alerts_and_jobs

async def main():
    settings = load_settings(None, storage={"data_dir": sys.argv[1]})
    app = await build_app(settings)
    bot = TradingBot(app, settings.discord, settings.channels)
    wire_alerts_and_jobs(app, bot)
    await bot._async_setup_hook()
    await bot.setup_hook()
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size in MB, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def measure(cmd: list[str], ready_prefix: str, idle_s: float) -> tuple[float, float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SIM_"))}
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{cmd} exited before it was ready")
            if line.startswith(ready_prefix):
                break
        ready = time.perf_counter() - started
        time.sleep(idle_s)
        rss, peak = rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return ready, rss, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle before measuring")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print("| shape | start to ready (median) | idle RSS (median) | peak RSS (max) |")
    print("|---|---|---|---|")
    for shape in ("console", "bot"):
        rows = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                if shape == "console":
                    cmd = [
                        sys.executable,
                        "run_bot.py",
                        "--console",
                        "--env-file",
                        os.devnull,
                        "--data-dir",
                        tmp,
                    ]
                    prefix = "Trading console"
                else:
                    cmd = [sys.executable, "-c", BOT_SCRIPT, tmp]
                    prefix = "ready"
                rows.append(measure(cmd, prefix, args.idle))
        ready = statistics.median(r[0] for r in rows)
        rss = statistics.median(r[1] for r in rows)
        peak = max(r[2] for r in rows)
        print(f"| {shape} | {ready:.2f} s | {rss:.0f} MB | {peak:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
