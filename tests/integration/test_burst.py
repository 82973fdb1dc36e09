"""A burst of market data never queues stale work: the strategy sees every bar once, only the
newest may trade, and other tasks get the loop between slices of the burst."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine import bar_path
from engine.app import EngineApp, build_app
from engine.broker.port import BrokerOrder
from engine.domain import Bar, OrderRequest, OrderStatus, Side, Tick
from engine.strategy import Signal
from tests.support.app import sim_settings, start_app, wait_for

BURST = 10_000


async def test_burst_when_ten_thousand_updates_in_one_go_then_every_bar_seen_only_newest_trades(
    tmp_path: Path,
) -> None:
    app = await start_app(sim_settings(tmp_path, strategy={"symbols": ["AAPL"]}))
    engine = app.engine
    try:
        strategy = engine.strategies.instance("AAPL")
        assert strategy is not None
        seen: list[datetime] = []
        original = strategy.on_bar

        def counting(bar: Bar, position: Decimal) -> Signal | None:
            seen.append(bar.ts)
            return original(bar, position)

        strategy.on_bar = counting  # type: ignore[method-assign]
        dropped_before = engine.dropped_updates
        lag_samples_before = engine.loop_lag.count
        signals_before = engine.signals
        start = app.clock.now()
        price = Decimal("230.00")

        # One synchronous burst: nothing yields to the loop until every update is pushed.
        # A realistic timeline: a trade every second, a minute bar at each minute's end.
        bars = 0
        for i in range(BURST):
            price = Decimal("230.00") + Decimal(i % 100) / 100
            ts = start + timedelta(minutes=1, seconds=i)
            if i % 60 == 59:
                bar_ts = ts - timedelta(seconds=59)
                engine.on_bar(Bar("AAPL", bar_ts, price, price, price, price, Decimal(1000)))
                bars += 1
            else:
                engine.on_tick(Tick("AAPL", ts, price, Decimal(100)))
        await engine.settle()
        # let the loop-lag monitor take a sample after the burst
        await wait_for(lambda: engine.loop_lag.count > lag_samples_before + 2, within=10)

        assert len(seen) == bars, "the strategy must see every bar, once"
        assert seen == sorted(seen)
        assert engine.signals - signals_before <= 1, "only the newest bar may trade"
        assert engine.portfolio.last_price("AAPL") == price
        assert engine.dropped_updates - dropped_before >= BURST - 2
        status = await app.commands.status("test")
        assert status.dropped_updates == engine.dropped_updates
        # Bounded: handling 10,000 updates one by one would stall the loop for seconds;
        # coalesced, the worst lag stays far below that.
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
        start = app.clock.now()
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


async def test_burst_when_a_minute_wakes_every_symbol_then_other_tasks_run_between_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_app(sim_settings(tmp_path))
    engine = app.engine
    try:
        # A zero slice makes the dispatcher yield after every symbol, whatever this
        # machine's speed: what is tested is that it yields, not how fast it is.
        monkeypatch.setattr(bar_path, "SLICE_S", 0.0)
        # Halted: no order is sent, so no yield comes from sending one.
        await app.commands.halt("test", "burst", keep_positions=True)
        handled_when_other_ran: list[int] = []
        pending_before = engine.dropped_updates
        start = app.clock.now()

        async def other() -> None:
            while True:
                handled_when_other_ran.append(
                    sum(1 for s in engine.symbols if engine.portfolio.last_price(s) == 1)
                )
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        one = Decimal(1)
        for symbol in engine.symbols:  # one minute's bars for every symbol at once
            engine.on_bar(Bar(symbol, start, one, one, one, one, Decimal(10)))
        await engine.settle()
        task.cancel()

        assert engine.dropped_updates == pending_before
        marked_mid_burst = [n for n in handled_when_other_ran if 0 < n < len(engine.symbols)]
        assert marked_mid_burst, "another task ran only before or after the whole burst"
    finally:
        await app.stop()


async def test_bar_when_nothing_waits_then_its_order_passes_the_gate_inside_the_feeds_call(
    tmp_path: Path,
) -> None:
    app = await start_app(sim_settings(tmp_path, strategy={"symbols": ["AAPL"]}))
    engine = app.engine
    exchange = app.broker.exchange  # type: ignore[attr-defined]
    try:
        strategy = engine.strategies.instance("AAPL")
        assert strategy is not None
        before = engine.portfolio.qty("AAPL")
        side = Side.SELL if before > 0 else Side.BUY
        strategy.on_bar = lambda bar, position: Signal(side, "test")  # type: ignore[method-assign]
        assert not engine.orders.has_open("AAPL")
        measured = engine.bars.order_latency.count
        ts = app.clock.now()
        price = Decimal("231.00")

        engine.on_bar(Bar("AAPL", ts, price, price, price, price, Decimal(1000)))

        # No await yet: the strategy has seen the bar, its order has passed the gate and is
        # in the book, and only the broker call waits for the loop.
        [order] = engine.orders.open_orders("AAPL")
        assert order.status is OrderStatus.PENDING
        assert exchange.order_by_client_id(order.client_order_id) is None
        assert engine.bars.order_latency.count == measured + 1
        await engine.settle()
        assert exchange.order_by_client_id(order.client_order_id) is not None
        assert engine.portfolio.qty("AAPL") != before
    finally:
        await app.stop()


async def test_bar_when_the_slice_is_used_up_then_it_waits_for_the_dispatcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_app(sim_settings(tmp_path, strategy={"symbols": ["AAPL"]}))
    engine = app.engine
    try:
        monkeypatch.setattr(bar_path, "SLICE_S", 0.0)
        seen: list[datetime] = []
        strategy = engine.strategies.instance("AAPL")
        assert strategy is not None
        strategy.on_bar = lambda bar, position: seen.append(bar.ts)  # type: ignore[method-assign]
        ts = app.clock.now()
        one = Decimal(1)

        engine.on_bar(Bar("AAPL", ts, one, one, one, one, Decimal(10)))

        assert seen == []
        assert engine.bars.queue.pending
        await engine.settle()
        assert seen == [ts]
    finally:
        await app.stop()


async def test_burst_when_the_slice_runs_out_then_queued_bars_reach_the_gate_before_broker_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_app(sim_settings(tmp_path, strategy={"symbols": ["AAPL", "MSFT"]}))
    engine = app.engine
    try:
        happened = _record_orders(app, ["AAPL", "MSFT"], monkeypatch)
        ts = app.clock.now()
        price = Decimal("231.00")
        # AAPL's bar is handled at once; MSFT's queues behind a tick of MSFT waiting.
        engine.on_bar(Bar("AAPL", ts, price, price, price, price, Decimal(1000)))
        engine.on_tick(Tick("MSFT", ts, price, Decimal(1)))
        engine.on_bar(Bar("MSFT", ts, price, price, price, price, Decimal(1000)))
        assert happened == ["AAPL seen"]
        await engine.settle()

        assert happened == ["AAPL seen", "MSFT seen", "AAPL sent", "MSFT sent"]
    finally:
        await app.stop()


@pytest.mark.parametrize("waited_too_long", [False, True])
async def test_burst_when_yielding_between_slices_then_orders_decided_before_any_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waited_too_long: bool
) -> None:
    # Before: the broker calls of a slice's orders started at its end, so every later bar
    # of the burst waited for them (in the simulator ~0.3 ms of the loop per order). A burst
    # that never ends (ticks keep coming) must not hold its orders back for ever, though:
    # past MAX_SEND_DELAY_S they go out mid-burst.
    app = await start_app(sim_settings(tmp_path))
    engine = app.engine
    try:
        monkeypatch.setattr(bar_path, "SLICE_S", 0.0)  # a yield after every symbol
        if waited_too_long:
            monkeypatch.setattr(bar_path, "MAX_SEND_DELAY_S", 0.0)
        symbols = list(engine.symbols)[:3]
        assert len(symbols) == 3
        happened = _record_orders(app, symbols, monkeypatch)
        ts = app.clock.now()
        price = Decimal("231.00")
        for symbol in symbols:
            engine.on_bar(Bar(symbol, ts, price, price, price, price, Decimal(1000)))
        await engine.settle()

        decided_first = [f"{s} seen" for s in symbols] + [f"{s} sent" for s in symbols]
        if waited_too_long:
            assert happened.index(f"{symbols[0]} sent") < happened.index(f"{symbols[1]} seen")
            assert sorted(happened) == sorted(decided_first)
        else:
            assert happened == decided_first
    finally:
        await app.stop()


def _record_orders(
    app: EngineApp, symbols: list[str], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Each symbol's strategy asks for an order on every bar; the list records, in order,
    each bar the strategies see and each broker call."""
    engine = app.engine
    happened: list[str] = []
    for symbol in symbols:
        strategy = engine.strategies.instance(symbol)
        assert strategy is not None
        side = Side.SELL if engine.portfolio.qty(symbol) > 0 else Side.BUY

        def signal(bar: Bar, position: Decimal, side: Side = side) -> Signal:
            happened.append(f"{bar.symbol} seen")
            return Signal(side, "test")

        strategy.on_bar = signal  # type: ignore[method-assign]
    submit = app.broker.submit_order

    async def recording(request: OrderRequest) -> BrokerOrder:
        happened.append(f"{request.symbol} sent")
        return await submit(request)

    monkeypatch.setattr(app.broker, "submit_order", recording)
    return happened


async def test_start_when_the_first_minute_comes_before_the_dispatcher_ran_then_handled_inline(
    tmp_path: Path,
) -> None:
    # Before: the bar path learnt that start-up had opened the day only once its own task
    # ran, after the feed's (started first): the replay's whole first minute waited for the
    # dispatcher, and its orders were the slowest of the session (bar to submit p99).
    app = await build_app(sim_settings(tmp_path, strategy={"symbols": ["AAPL"]}))
    engine = app.engine
    try:
        await app.start()  # no await after this: no task of the engine has run yet
        strategy = engine.strategies.instance("AAPL")
        assert strategy is not None
        seen: list[datetime] = []
        strategy.on_bar = lambda bar, position: seen.append(bar.ts)  # type: ignore[method-assign]
        ts = app.clock.now()
        one = Decimal(1)

        engine.on_bar(Bar("AAPL", ts, one, one, one, one, Decimal(10)))

        assert seen == [ts]
        assert not engine.bars.queue.pending
    finally:
        await app.stop()
