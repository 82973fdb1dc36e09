"""A burst of market data never queues stale work: the worker sees only the latest."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from engine.domain import Bar, Tick
from tests.support.app import sim_settings, start_app, wait_for

BURST = 10_000


async def test_burst_when_ten_thousand_updates_in_one_go_then_worker_sees_latest_and_counts_drops(
    tmp_path: Path,
) -> None:
    app = await start_app(sim_settings(tmp_path, strategy={"symbols": ["AAPL"]}))
    engine = app.engine
    try:
        evaluations = 0
        original = engine.strategy.on_bar

        def counting(symbol, frame, position):  # type: ignore[no-untyped-def]
            nonlocal evaluations
            evaluations += 1
            return original(symbol, frame, position)

        engine.strategy.on_bar = counting  # type: ignore[method-assign]
        dropped_before = engine.dropped_updates
        lag_samples_before = engine.loop_lag.count
        start = engine.buffers["AAPL"].bars[-1].ts
        price = Decimal("230.00")

        # One synchronous burst: nothing yields to the loop until every update is pushed.
        # A realistic timeline: a trade every second, a minute bar at each minute's end.
        for i in range(BURST):
            price = Decimal("230.00") + Decimal(i % 100) / 100
            ts = start + timedelta(minutes=1, seconds=i)
            if i % 60 == 59:
                bar_ts = ts - timedelta(seconds=59)
                engine.on_bar(Bar("AAPL", bar_ts, price, price, price, price, Decimal(1000)))
            else:
                engine.on_tick(Tick("AAPL", ts, price, Decimal(100)))
        await engine.settle()
        # let the loop-lag monitor take a sample after the burst
        await wait_for(lambda: engine.loop_lag.count > lag_samples_before + 2, within=10)

        assert evaluations <= 2, "the worker evaluated stale bars instead of the latest"
        assert engine.portfolio.last_price("AAPL") == price
        assert engine.dropped_updates - dropped_before >= BURST - 2
        assert len(engine.buffers["AAPL"].bars) == app.settings.engine.history_bars
        status = await app.commands.status("test")
        assert status.dropped_updates == engine.dropped_updates
        # Bounded: handling 10,000 updates one by one through the strategy would stall the
        # loop for seconds; coalesced, the worst lag stays far below that.
        assert engine.loop_lag.max < 1.0, f"loop lag {engine.loop_lag.max:.3f} s"
    finally:
        await app.stop()


async def test_burst_when_updates_arrive_then_other_tasks_keep_running(tmp_path: Path) -> None:
    app = await start_app(sim_settings(tmp_path, strategy={"symbols": ["AAPL"]}))
    engine = app.engine
    try:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.create_task(heartbeat())
        start = engine.buffers["AAPL"].bars[-1].ts
        for batch in range(20):
            for i in range(500):
                n = batch * 500 + i
                engine.on_tick(Tick("AAPL", start + timedelta(seconds=n), Decimal(230), Decimal(1)))
            await asyncio.sleep(0)
        await engine.settle()
        beat.cancel()

        assert ticks >= 20
    finally:
        await app.stop()
