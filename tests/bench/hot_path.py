"""Hot-path benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.hot_path [--symbols 100] [--runs 3]

Replays one session of minute bars for N symbols as fast as possible through the real engine
on the simulator (real SQLite journal, real risk gate, golden-cross strategy), and reports
market-data updates handled per second, bar-to-order-submit latency (p50/p99), event-loop lag
p99 and peak RSS. Each run uses a fresh temp data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from config import load_settings
from engine.app import build_app
from engine.clock import NEW_YORK
from tests.support.app import wait_for

DAYS = (
    datetime(2026, 11, 19, 9, 30, tzinfo=NEW_YORK),
    datetime(2026, 11, 20, 9, 30, tzinfo=NEW_YORK),
)


def write_bars(path: Path, symbols: list[str], seed: int = 7) -> int:
    """Random walks with trending and ranging stretches: the strategy trades all day."""
    rng = random.Random(seed)
    rows = 0
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        prices = {s: 50 + rng.random() * 400 for s in symbols}
        drift = dict.fromkeys(symbols, 0.0)
        for day in DAYS:
            for minute in range(390):
                stamp = (day + timedelta(minutes=minute)).isoformat()
                for s in symbols:
                    if minute % 45 == 0:
                        drift[s] = rng.choice((-1, 0, 1)) * prices[s] * 0.0004
                    o = prices[s]
                    c = max(1.0, o + drift[s] + rng.gauss(0, o * 0.0008))
                    hi, lo = max(o, c) * 1.0005, min(o, c) * 0.9995
                    volume = rng.randint(500, 5000)
                    out.writerow(
                        [stamp, s, f"{o:.2f}", f"{hi:.2f}", f"{lo:.2f}", f"{c:.2f}", volume]
                    )
                    prices[s] = c
                    rows += 1
    return rows


async def one_run(symbols: list[str], csv_path: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None,
            mode="sim",
            sim={"replay_speed": "max", "replay_csv": csv_path, "commission_min": "0"},
            storage={"data_dir": Path(tmp)},
            strategy={"symbols": symbols},
            risk={
                "max_orders_per_day": 1_000_000,
                "max_gross_exposure": "100000000",
                "daily_loss_limit": "100000000",
            },
            engine={"loop_lag_interval_s": 0.01},
        )
        app = await build_app(settings)
        await app.start()
        started = time.perf_counter()
        await wait_for(lambda: app.feed.health.finished, within=600, interval=0.05)
        await app.engine.settle()
        elapsed = time.perf_counter() - started
        engine = app.engine
        updates = app.feed.health.messages
        result = {
            "updates": updates,
            "seconds": elapsed,
            "updates_per_s": updates / elapsed,
            "orders": engine.signals,
            "submit_p50_ms": (engine.signal_latency.percentile(50) or 0) * 1000,
            "submit_p99_ms": (engine.signal_latency.percentile(99) or 0) * 1000,
            "loop_lag_p99_ms": (engine.loop_lag.percentile(99) or 0) * 1000,
            "dropped": engine.dropped_updates,
        }
        await app.stop()
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "bars.csv"
        rows = write_bars(csv_path, symbols)
        print(f"{args.symbols} symbols, {rows} bars (one session of history + one replayed)")
        results = [asyncio.run(one_run(symbols, csv_path)) for _ in range(args.runs)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| run | updates/s | orders | submit p50 | submit p99 | loop lag p99 | dropped |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        print(
            f"| {i} | {r['updates_per_s']:,.0f} | {r['orders']:.0f} | {r['submit_p50_ms']:.2f} ms"
            f" | {r['submit_p99_ms']:.2f} ms | {r['loop_lag_p99_ms']:.1f} ms | {r['dropped']:.0f} |"
        )
    median = statistics.median(r["updates_per_s"] for r in results)
    print(f"median {median:,.0f} updates/s; peak RSS {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
