"""Command-latency benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.commands [--symbols 100] [--runs 3] [--samples 300]

While the hot path is saturated (the simulator replaying a session of minute bars for many
symbols as fast as it can: real engine, real SQLite journal, golden cross trading), `!status`
is asked through the command service every 10 ms and each answer timed, p50 and p99. Side by
side, in one run, each in its own process:

- audit behind the reply: a read's audit row is written behind it (as shipped);
- audit before the reply: the row committed before the answer returns, as every command did
  before (and as a control command still does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from config import load_settings
from engine.app import build_app
from tests.bench.hot_path import trading_days, write_bars

VARIANTS = ("audit behind the reply", "audit before the reply")
INTERVAL_S = 0.01


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def one_run(variant: str, csv_path: Path, symbols: int, samples: int) -> dict[str, float]:
    names = [f"S{i:03d}" for i in range(symbols)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None,
            mode="sim",
            sim={"replay_speed": "max", "replay_csv": csv_path, "commission_min": "0"},
            storage={"data_dir": Path(tmp)},
            strategy={"symbols": names},
            risk={
                "max_orders_per_day": 1_000_000,
                "max_gross_exposure": "100000000",
                "daily_loss_limit": "100000000",
            },
        )
        app = await build_app(settings)
        commands = app.commands
        if variant == VARIANTS[1]:
            record = commands._record

            async def durable(*args: Any) -> None:
                await record(*args[:-1], True)  # committed before the reply, as control is

            commands._record = durable  # type: ignore[method-assign]
        await app.start()
        latencies: list[float] = []
        while len(latencies) < samples and not app.feed.health.finished:
            started = time.perf_counter()
            await commands.status("bench")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(INTERVAL_S)
        updates = app.feed.health.messages
        await app.stop()
    return {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "updates": updates,
    }


def run_in_child(variant: str, csv_path: Path, symbols: int, samples: int) -> dict[str, float]:
    spec = json.dumps([variant, str(csv_path), symbols, samples])
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.commands", "--child", spec],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        variant, path, symbols, samples = json.loads(args.child)
        print(json.dumps(asyncio.run(one_run(variant, Path(path), symbols, samples))))
        return 0

    print(f"`!status` while replaying {args.symbols} symbols at max speed")
    print("| audit row | !status p50 | p99 | max | samples (each run) |")
    print("|---|---|---|---|---|")
    medians: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "bars.csv"
        write_bars(csv_path, [f"S{i:03d}" for i in range(args.symbols)], trading_days(1))
        for variant in VARIANTS:
            runs = [
                run_in_child(variant, csv_path, args.symbols, args.samples)
                for _ in range(args.runs)
            ]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            medians[variant] = med
            per_run = " / ".join(f"{r['samples']:.0f}" for r in runs)
            print(
                f"| {variant} | {med['p50_ms']:.2f} ms | {med['p99_ms']:.2f} ms "
                f"| {med['max_ms']:.1f} ms | {per_run} |",
                flush=True,
            )
    after, before = medians[VARIANTS[0]], medians[VARIANTS[1]]
    print(f"\nmedians of {args.runs} runs each, every run its own process")
    print(
        f"behind vs before the reply: p50 {after['p50_ms'] / before['p50_ms']:.2f}x, "
        f"p99 {after['p99_ms'] / before['p99_ms']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
