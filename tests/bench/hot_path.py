"""Hot-path benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.hot_path [--runs 3] [--quick]

Replays one session of minute bars as fast as possible through the real engine on the
simulator (real SQLite journal, real risk gate, golden cross) and reports market-data
updates handled per second, the cost per update, bar-to-order-submit latency (p50/p99),
event-loop lag p99 and the peak RSS of the process. Side by side, in one run:

- incremental: the golden cross as shipped (running sums), 100 symbols;
- frame: the same strategy rebuilding a pandas frame on every bar (the old path,
  ``tests.support.frame_golden_cross``), 100 symbols;
- 500 symbols: the per-update cost must not grow with the number of symbols;
- 10 days of history in the file instead of 1: neither the per-update cost nor the memory
  may grow with it;
- with ``--cpu N`` every run is confined to that one CPU, its threads included (the
  figures of "one core"); without it the journal's SQLite thread may run on another;
- with ``--python PATH``: the first scenario once more on another CPython 3.11 (e.g. a
  PGO+LTO build like the container's ``python:3.11-slim``), importing this checkout and
  this interpreter's installed packages.

Each run is its own process (fresh temp data dir, its own peak RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time as clock
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from config import load_settings
from engine.app import build_app
from engine.clock import NEW_YORK

REPLAY_DAY = date(2026, 11, 20)
FRAME = "tests.support.frame_golden_cross:FrameGoldenCross"


@dataclass(frozen=True)
class Scenario:
    name: str
    symbols: int
    history_days: int
    strategy: str = "golden_cross"
    python: str = ""
    """The interpreter that runs it; empty: this one."""


SCENARIOS = (
    Scenario("incremental, 100 symbols", 100, 1),
    Scenario("frame per bar, 100 symbols", 100, 1, FRAME),
    Scenario("incremental, 500 symbols", 500, 1),
    Scenario("incremental, 100 symbols, 10 days of history", 100, 10),
)


def trading_days(history: int) -> list[date]:
    """``history`` weekdays before the replay day, then the replay day."""
    days = [REPLAY_DAY]
    day = REPLAY_DAY
    while len(days) <= history:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            days.insert(0, day)
    return days


def write_bars(path: Path, symbols: list[str], days: list[date], seed: int = 7) -> int:
    """Random walks with trending and ranging stretches: the strategy trades all day. The
    last (replayed) day is the same whatever the history before it, so runs with more
    history replay exactly the same session."""
    rows = 0
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        for day in days:
            replayed = day == days[-1]
            # Seeded by the day: a day is the same in every file that holds it.
            rng = random.Random(seed if replayed else seed * 1_000_000 + day.toordinal())
            rows += _write_day(out, rng, symbols, day)
    return rows


def _write_day(out: Any, rng: random.Random, symbols: list[str], day: date) -> int:
    prices = {s: 50 + rng.random() * 400 for s in symbols}
    drift = dict.fromkeys(symbols, 0.0)
    open_at = datetime.combine(day, time(9, 30), NEW_YORK)
    for minute in range(390):
        stamp = (open_at + timedelta(minutes=minute)).isoformat()
        for s in symbols:
            if minute % 45 == 0:
                drift[s] = rng.choice((-1, 0, 1)) * prices[s] * 0.0004
            o = prices[s]
            c = max(1.0, o + drift[s] + rng.gauss(0, o * 0.0008))
            hi, lo = max(o, c) * 1.0005, min(o, c) * 0.9995
            volume = rng.randint(500, 5000)
            out.writerow([stamp, s, f"{o:.2f}", f"{hi:.2f}", f"{lo:.2f}", f"{c:.2f}", volume])
            prices[s] = c
    return 390 * len(symbols)


async def one_run(scenario: Scenario, csv_path: Path) -> dict[str, float]:
    symbols = [f"S{i:03d}" for i in range(scenario.symbols)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None,
            mode="sim",
            sim={"replay_speed": "max", "replay_csv": csv_path, "commission_min": "0"},
            storage={"data_dir": Path(tmp)},
            strategy={"name": scenario.strategy, "symbols": symbols},
            risk={
                "max_orders_per_day": 1_000_000,
                "max_gross_exposure": "100000000",
                "daily_loss_limit": "100000000",
            },
            engine={"loop_lag_interval_s": 0.01},
        )
        app = await build_app(settings, settle_heap=True)  # as run_bot.py does
        await app.start()
        started, cpu_started = clock.perf_counter(), clock.process_time()
        await replay_done(app)
        await app.engine.settle()
        elapsed = clock.perf_counter() - started
        cpu = clock.process_time() - cpu_started
        engine = app.engine
        updates = app.feed.health.messages
        result = {
            "updates": updates,
            "seconds": elapsed,
            "updates_per_s": updates / elapsed,
            "us_per_update": elapsed / updates * 1e6,
            "cpu_us_per_update": cpu / updates * 1e6,
            "orders": engine.signals,
            "submit_p50_ms": (engine.bars.order_latency.percentile(50) or 0) * 1000,
            "submit_p99_ms": (engine.bars.order_latency.percentile(99) or 0) * 1000,
            "ack_p50_ms": (engine.signal_latency.percentile(50) or 0) * 1000,
            "ack_p99_ms": (engine.signal_latency.percentile(99) or 0) * 1000,
            "state": 0 if engine.state.state.value == "ACTIVE" else 1,
            "loop_lag_p99_ms": (engine.loop_lag.percentile(99) or 0) * 1000,
            "dropped": engine.dropped_updates,
        }
        await app.stop()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


async def replay_done(app: Any) -> None:
    """Return as the replay ends (its last minute settled): awaits the engine's feed task
    itself. (Polling ``health.finished`` every 50 ms added 0-50 ms to every run, ~3 % of a
    100-symbol run, and left the figures in 50 ms steps.)"""
    feed = [t for t in asyncio.all_tasks() if t.get_name() == "feed"]
    if len(feed) != 1:
        raise RuntimeError(f"expected the engine's one task named 'feed', found {len(feed)}")
    await asyncio.wait_for(asyncio.shield(feed[0]), 1200)
    if not app.feed.health.finished:
        raise RuntimeError(f"the replay stopped before its end: {app.feed.health.detail}")


def ratio(a: dict[str, float], b: dict[str, float], key: str) -> str:
    return f"{a[key] / b[key]:.2f}x"


def run_in_child(scenario: Scenario, csv_path: Path, cpu: int | None) -> dict[str, float]:
    spec = json.dumps([scenario.__dict__, str(csv_path), cpu])
    env = None
    if scenario.python:
        # This checkout first, then this interpreter's packages (same minor version: same ABI).
        paths = [str(Path(__file__).resolve().parents[2]), sysconfig.get_paths()["purelib"]]
        env = os.environ | {"PYTHONPATH": os.pathsep.join(paths)}
    out = subprocess.run(
        [scenario.python or sys.executable, "-m", "tests.bench.hot_path", "--child", spec],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def other_python(path: str) -> Scenario:
    """The first scenario on ``path``, which must be a CPython of this minor version."""
    probe = "import platform, sys; print(sys.implementation.cache_tag, platform.python_version())"
    try:
        tag, version = subprocess.run(
            [path, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError, ValueError) as exc:
        raise SystemExit(f"--python {path}: cannot run it ({exc})") from None
    if tag != sys.implementation.cache_tag:
        raise SystemExit(f"--python {path}: {tag}, this one is {sys.implementation.cache_tag}")
    first = SCENARIOS[0]
    return Scenario(f"{first.name}, Python {version} at {path}", first.symbols, 1, python=path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only the first two scenarios")
    parser.add_argument(
        "--python", help="also run the first scenario on this CPython (same minor version)"
    )
    parser.add_argument(
        "--cpu", type=int, help="run each child on this one CPU only, its threads included"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cpu is not None and not args.child and args.cpu not in os.sched_getaffinity(0):
        parser.error(
            f"--cpu {args.cpu}: not one of this process's CPUs {sorted(os.sched_getaffinity(0))}"
        )
    if args.child:
        fields, path, cpu = json.loads(args.child)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        print(json.dumps(asyncio.run(one_run(Scenario(**fields), Path(path)))))
        return 0

    scenarios = SCENARIOS[:2] if args.quick else SCENARIOS
    if args.python:
        scenarios = (*scenarios, other_python(args.python))
    medians: dict[str, dict[str, float]] = {}
    print(
        "| scenario | updates/s (each run) | µs/update (CPU µs) | orders | bar to submit p50 / p99 "
        "| bar to broker ack p50 / p99 | loop lag p99 | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[Scenario, Path] = {}
        for sc in scenarios:
            files[sc] = Path(tmp) / f"bars_{sc.symbols}_{sc.history_days}.csv"
            if not files[sc].exists():
                symbols = [f"S{i:03d}" for i in range(sc.symbols)]
                write_bars(files[sc], symbols, trading_days(sc.history_days))
        # Round robin: every scenario's n-th run under the same load as the others' n-th.
        runs: dict[Scenario, list[dict[str, float]]] = {sc: [] for sc in scenarios}
        for _ in range(args.runs):
            for sc in scenarios:
                runs[sc].append(run_in_child(sc, files[sc], args.cpu))
    for sc in scenarios:
        if any(r["state"] for r in runs[sc]):
            print(f"warning: {sc.name}: the engine left ACTIVE during a run", flush=True)
        med = {k: statistics.median(r[k] for r in runs[sc]) for k in runs[sc][0]}
        medians[sc.name] = med
        per_run = " / ".join(f"{r['updates_per_s']:,.0f}" for r in runs[sc])
        print(
            f"| {sc.name} | {med['updates_per_s']:,.0f} ({per_run}) "
            f"| {med['us_per_update']:.1f} ({med['cpu_us_per_update']:.1f}) | {med['orders']:.0f} "
            f"| {med['submit_p50_ms']:.2f} / {med['submit_p99_ms']:.2f} ms "
            f"| {med['ack_p50_ms']:.2f} / {med['ack_p99_ms']:.2f} ms "
            f"| {med['loop_lag_p99_ms']:.1f} ms | {med['peak_rss_mb']:.0f} MB |",
            flush=True,
        )
    names = [sc.name for sc in scenarios]
    base = medians[names[0]]
    pinned = "" if args.cpu is None else f", on CPU {args.cpu} only"
    print(f"\nmedians of {args.runs} runs each, every run its own process{pinned}")
    frame = medians[names[1]]
    print(f"incremental vs frame per bar: {ratio(base, frame, 'updates_per_s')} the updates/s")
    print(f"updates per CPU second, incremental: {1e6 / base['cpu_us_per_update']:,.0f}")
    if args.python:
        other = medians[names[-1]]
        print(f"{args.python} vs this interpreter: {ratio(other, base, 'updates_per_s')}")
    if not args.quick:
        wide, long = medians[SCENARIOS[2].name], medians[SCENARIOS[3].name]
        print(f"500 vs 100 symbols: {ratio(wide, base, 'us_per_update')} the cost per update")
        print(
            f"10 days vs 1 day of history: {ratio(long, base, 'us_per_update')} the cost per "
            f"update, {ratio(long, base, 'peak_rss_mb')} the peak RSS"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
