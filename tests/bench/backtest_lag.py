"""Event-loop lag of a trading engine while ``!backtest`` runs (by hand, not in CI):

    .venv/bin/python -m tests.bench.backtest_lag [--symbols 50] [--days 20] [--idle-s 10]

The real engine on the simulator replays the sample day at 60x (its normal demo pace: every
symbol's bar each second, orders, fills, journal), and a probe measures the loop's lag
(a 10 ms sleep's lateness) in three phases of the same run:

- idle: nothing else;
- separate process: a ``BacktestService`` backtest (what ``!backtest`` runs) of golden cross
  on N symbols x D sessions of generated bars, in its own process at lower priority;
- same process (for contrast): the same backtest in a thread of the engine's process, where
  it competes with the loop for the interpreter lock.

It prints p50/p99/max lag per phase and each backtest's duration.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import tempfile
import time
from pathlib import Path

from config import load_settings
from engine.app import build_app
from engine.backtest.plan import Request, make_plan
from engine.backtest.runner import BacktestRunner
from engine.backtest.service import BacktestService
from tests.bench.backtest import make_bars

PROBE_S = 0.01


class Probe:
    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(PROBE_S)
            self.samples.append(max(0.0, loop.time() - before - PROBE_S))

    def start(self) -> None:
        self.samples = []
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.samples


def describe(name: str, samples: list[float], took: float | None = None) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    extra = f", backtest {took:.1f} s" if took is not None else ""
    return (
        f"{name:<18} p50 {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"
        f"  max {ordered[-1] * 1000:7.2f} ms  ({len(ordered)} samples{extra})"
    )


async def main(symbols: int, days: int, idle_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bars_csv = root / "bars.csv"
        with bars_csv.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
            for b in make_bars(symbols, days):
                out.writerow([b.ts.isoformat(), b.symbol, b.open, b.high, b.low, b.close, b.volume])
        names = ",".join(f"S{i:03d}" for i in range(symbols))
        engine_settings = load_settings(
            None,
            mode="sim",
            sim={"replay_speed": "60"},
            storage={"data_dir": root / "engine"},
            engine={"loop_lag_interval_s": 0.05},
        )
        backtest_settings = load_settings(
            None,
            mode="sim",
            sim={"replay_csv": bars_csv},
            storage={"data_dir": root / "backtests"},
            strategy={"symbols": names},
        )
        app = await build_app(engine_settings)
        await app.start()
        probe = Probe()
        try:
            await asyncio.sleep(2)  # past the start-up
            probe.start()
            await asyncio.sleep(idle_s)
            print(describe("idle", await probe.stop()))

            service = BacktestService(backtest_settings)
            probe.start()
            started = time.perf_counter()
            await service.run("bench", "golden_cross", days)
            took = time.perf_counter() - started
            print(describe("separate process", await probe.stop(), took))

            plan = await asyncio.to_thread(
                make_plan, backtest_settings, Request(strategy="golden_cross", days=days)
            )
            probe.start()
            started = time.perf_counter()
            runner = BacktestRunner(plan.config)
            await asyncio.to_thread(runner.run, plan.source.bars(plan.span))
            took = time.perf_counter() - started
            print(describe("same process", await probe.stop(), took))
            print(f"engine: {app.feed.health.messages} bars replayed meanwhile")
        finally:
            await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--idle-s", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.symbols, args.days, args.idle_s))
