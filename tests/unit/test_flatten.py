"""Flattener: close everything fast, confirm with the broker, retry leftovers, report honestly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import engine.flatten
from engine.broker.port import BrokerOrder
from engine.domain import OrderRequest, OrderType, Side, TradingState
from engine.errors import BrokerRejected, BrokerUnavailable
from engine.events import TradingStateChanged
from engine.flatten import Flattener, FlattenProgress
from engine.orders import Order
from tests.support.app import wait_for
from tests.unit.engine_stubs import DAY, ExecParts, build_execution, ny, priced_execution, request

D = Decimal
REFUSAL = "insufficient qty available for order (requested: 10, available: 0)"


def flattener(p: ExecParts, *, deadline_s: float = 3.0, interval_s: float = 0.05) -> Flattener:
    return Flattener(
        broker=p.broker,
        execution=p.execution,
        portfolio=p.portfolio,
        state=p.state,
        market=p.market,
        clock=p.clock,
        bus=p.bus,
        deadline_s=deadline_s,
        confirm_interval_s=interval_s,
    )


async def seed(p: ExecParts) -> None:
    """Long 10 AAPL @ 100, short 5 MSFT @ 200, and a resting AAPL limit buy."""
    await p.execution.submit(request("seed-a", "AAPL", Side.BUY, 10), checked=False)
    await p.execution.submit(request("seed-m", "MSFT", Side.SELL, 5), checked=False)
    limit = OrderRequest("seed-l", "AAPL", Side.BUY, D(5), OrderType.LIMIT, D(97), strategy="t")
    await p.execution.submit(limit, checked=False)
    await p.pump()
    assert p.portfolio.qty("AAPL") == D(10)
    assert p.portfolio.qty("MSFT") == D(-5)
    assert p.orders.has_open("AAPL")


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[ExecParts]:
    async with priced_execution(tmp_path) as p:
        await seed(p)
        p.start_consumer()
        yield p


def transitions(p: ExecParts) -> list[tuple[TradingState, TradingState, str]]:
    return [(e.old, e.new, e.cause) for e in p.of(TradingStateChanged)]


async def test_flatten_when_positions_and_orders_open_then_flat_and_back_to_active(
    parts: ExecParts,
) -> None:
    report = await flattener(parts).flatten("trader")

    assert report.flat
    assert [(o.symbol, o.qty_before, o.status) for o in report.outcomes] == [
        ("AAPL", D(10), "closed"),
        ("MSFT", D(-5), "closed"),
    ]
    assert (report.open_orders_left, report.market_open, report.joined) == (0, True, False)
    assert report.actor == "trader"
    assert parts.exchange.positions() == []
    assert parts.exchange.open_orders() == []
    await wait_for(lambda: parts.portfolio.positions() == [] and not parts.orders.open_orders())
    assert transitions(parts) == [
        (TradingState.ACTIVE, TradingState.REDUCING, "flatten"),
        (TradingState.REDUCING, TradingState.ACTIVE, "manual"),
    ]
    assert parts.state.state is TradingState.ACTIVE
    assert parts.broker.close_all_calls == 1
    assert len(parts.broker.submitted) == 3  # the seeds only: nothing needed a retry
    closers = [o for o in parts.orders.created_since(ny(0)) if o.strategy == "flatten"]
    assert sorted(o.symbol for o in closers) == ["AAPL", "MSFT"]


async def test_flatten_when_halted_during_the_flatten_then_halt_stays(parts: ExecParts) -> None:
    async def halt_once(progress: FlattenProgress) -> None:
        if progress.phase == "closing" and parts.state.state is TradingState.REDUCING:
            await parts.state.halt("trader", "stop everything")

    report = await flattener(parts).flatten("trader", halt_once)

    assert report.flat
    assert parts.state.state is TradingState.HALTED
    assert parts.state.record.reason == "stop everything"


async def test_flatten_when_already_halted_then_not_made_reducing_and_still_closes(
    parts: ExecParts,
) -> None:
    await parts.state.halt("trader", "halt first")

    report = await flattener(parts).flatten("trader")

    assert report.flat
    assert transitions(parts) == [(TradingState.ACTIVE, TradingState.HALTED, "manual")]


async def test_flatten_when_trader_set_reducing_then_reducing_stays(parts: ExecParts) -> None:
    await parts.state.reduce("trader", "winding down")

    await flattener(parts).flatten("trader")

    assert parts.state.state is TradingState.REDUCING
    assert parts.state.record.reason == "winding down"


async def test_flatten_when_close_refused_and_retries_rejected_then_broker_message_reported(
    parts: ExecParts,
) -> None:
    parts.broker.refuse_close = {"AAPL": REFUSAL}
    parts.broker.submit_error = BrokerRejected("asset AAPL is not tradable")

    report = await flattener(parts).flatten("trader")

    assert not report.flat
    aapl, msft = report.outcomes
    assert (aapl.symbol, aapl.status, aapl.qty_left) == ("AAPL", "failed", D(10))
    assert aapl.detail == "asset AAPL is not tradable"
    assert (msft.symbol, msft.status) == ("MSFT", "closed")
    assert report.leftovers == [aapl]
    retries = [r for r in parts.broker.submitted if r.strategy == "flatten"]
    assert len(retries) == 3  # three attempts per symbol, then it gives up
    assert {(r.symbol, r.side, r.qty) for r in retries} == {("AAPL", Side.SELL, D(10))}
    assert parts.state.state is TradingState.ACTIVE


async def test_flatten_when_close_refused_and_retries_unconfirmed_then_refusal_reported(
    parts: ExecParts,
) -> None:
    parts.broker.refuse_close = {"AAPL": REFUSAL}
    parts.broker.submit_error = BrokerUnavailable("connection reset")

    report = await flattener(parts).flatten("trader")

    aapl = report.outcomes[0]
    assert (aapl.symbol, aapl.status, aapl.detail) == ("AAPL", "failed", REFUSAL)


async def test_flatten_when_close_refused_but_retry_fills_then_flat(parts: ExecParts) -> None:
    parts.broker.refuse_close = {"AAPL": REFUSAL}

    report = await flattener(parts).flatten("trader")

    assert report.flat
    assert [o.status for o in report.outcomes] == ["closed", "closed"]
    [retry] = [r for r in parts.broker.submitted if r.strategy == "flatten"]
    assert (retry.symbol, retry.side, retry.qty) == ("AAPL", Side.SELL, D(10))
    assert parts.exchange.positions() == []


async def test_flatten_when_close_all_call_fails_then_symbols_closed_one_by_one(
    parts: ExecParts,
) -> None:
    parts.exchange.cancel_all()  # no resting orders: see the next test for those
    await wait_for(lambda: not parts.orders.open_orders())
    parts.broker.close_all_error = BrokerUnavailable("503 service unavailable")

    report = await flattener(parts).flatten("trader")

    assert report.flat
    assert report.notes == ["close-all failed: 503 service unavailable; retrying symbol by symbol"]
    retries = [r for r in parts.broker.submitted if r.strategy == "flatten"]
    assert sorted((r.symbol, r.side, r.qty) for r in retries) == [
        ("AAPL", Side.SELL, D(10)),
        ("MSFT", Side.BUY, D(5)),
    ]


async def test_flatten_when_close_all_call_fails_with_resting_order_then_still_flat(
    parts: ExecParts,
) -> None:
    parts.broker.close_all_error = BrokerUnavailable("503 service unavailable")

    report = await flattener(parts, deadline_s=1.0).flatten("trader")

    assert [(o.symbol, o.status) for o in report.outcomes] == [
        ("AAPL", "closed"),
        ("MSFT", "closed"),
    ]
    assert report.flat
    assert parts.exchange.open_orders() == []


async def test_flatten_when_market_closed_then_queued_report_with_next_open(
    parts: ExecParts,
) -> None:
    parts.clock.set(ny(17))

    report = await flattener(parts).flatten("trader")

    assert not report.flat
    assert not report.market_open
    assert report.next_open == ny(9, 30, day=DAY + timedelta(days=1))
    assert [(o.symbol, o.status, o.qty_left) for o in report.outcomes] == [
        ("AAPL", "queued", D(10)),
        ("MSFT", "queued", D(-5)),
    ]
    assert report.open_orders_left == 2
    # The one sentence on the closed market is the engine's; its symbols do not repeat it.
    assert (
        report.market_note
        == "Market closed: close orders queued, they fill at Wed Mar 11 09:30 ET."
    )
    assert report.notes == []
    assert {o.detail for o in report.outcomes} == {"close order queued for the open"}
    assert parts.state.state is TradingState.ACTIVE


async def test_flatten_when_one_already_running_then_second_caller_joins_it(
    parts: ExecParts,
) -> None:
    gate = asyncio.Event()
    parts.broker.close_all_gate = gate
    flat = flattener(parts)
    loop = asyncio.get_running_loop()
    first = loop.create_task(flat.flatten("alice"))
    await wait_for(lambda: parts.broker.close_all_calls == 1)
    second = loop.create_task(flat.flatten("bob"))
    await asyncio.sleep(0)
    assert flat.running

    gate.set()
    one, two = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)

    assert (one.joined, two.joined) == (False, True)
    assert two.actor == "alice"
    assert two.started_at == one.started_at
    assert one.flat
    assert two.flat
    assert parts.broker.close_all_calls == 1
    assert not flat.running


async def test_flatten_when_progress_callback_fails_then_flatten_completes_and_others_notified(
    parts: ExecParts,
) -> None:
    seen: list[tuple[str, int, int]] = []

    async def broken(progress: FlattenProgress) -> None:
        raise RuntimeError("discord edit failed")

    async def record(progress: FlattenProgress) -> None:
        seen.append((progress.phase, progress.total, progress.done))

    flat = flattener(parts)
    gate = asyncio.Event()
    parts.broker.close_all_gate = gate
    loop = asyncio.get_running_loop()
    first = loop.create_task(flat.flatten("alice", broken))
    await wait_for(lambda: parts.broker.close_all_calls == 1)
    second = loop.create_task(flat.flatten("bob", record))
    await asyncio.sleep(0)
    gate.set()
    report, _ = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)

    assert report.flat
    assert "confirming" in [phase for phase, _, _ in seen]
    assert seen[-1] == ("done", 2, 2)


async def test_flatten_when_progress_requested_then_phases_reported_in_order(
    parts: ExecParts,
) -> None:
    seen: list[tuple[str, int, int]] = []

    async def record(progress: FlattenProgress) -> None:
        seen.append((progress.phase, progress.total, progress.done))

    await flattener(parts).flatten("trader", record)

    assert seen[0] == ("closing", 2, 0)
    assert seen[-1] == ("done", 2, 2)
    phases = [phase for phase, _, _ in seen]
    assert phases.index("confirming") < phases.index("done")


async def test_flatten_when_close_order_never_completes_then_reported_open_at_deadline(
    tmp_path: Path,
) -> None:
    p = await build_execution(tmp_path, max_fill="6")
    try:
        p.price("AAPL", 100)
        await p.execution.submit(request("seed-a", qty=10), checked=False)  # 6 @ 100
        p.price("AAPL", 100)  # 4 more
        await p.pump()
        p.start_consumer()
        loop = asyncio.get_running_loop()
        started = loop.time()

        report = await flattener(p, deadline_s=0.3).flatten("trader")

        assert loop.time() - started >= 0.3
        assert not report.flat
        [aapl] = report.outcomes
        assert (aapl.status, aapl.qty_left, aapl.detail) == (
            "failed",
            D(4),  # 6 of the close filled, the rest waits for a price that never comes
            "still open at the deadline",
        )
        assert report.open_orders_left == 1
    finally:
        await p.close()


async def test_flatten_when_fills_trail_close_all_then_broker_asked_at_once_and_when_stream_flat(
    tmp_path: Path,
) -> None:
    p = await build_execution(tmp_path, max_fill="6")
    try:
        p.price("AAPL", 100)
        await p.execution.submit(request("seed-a", qty=10), checked=False)
        p.price("AAPL", 100)
        await p.pump()
        p.start_consumer()

        async def next_print_when_partly_closed() -> None:
            await wait_for(lambda: p.portfolio.qty("AAPL") == D(4))
            p.price("AAPL", 100)

        printer = asyncio.get_running_loop().create_task(next_print_when_partly_closed())
        report = await flattener(p, interval_s=30.0).flatten("trader")
        await printer

        assert report.flat
        assert report.elapsed_s < 5  # not the 30 s wait: the stream said every symbol closed
        # Asked once as soon as close-all answered (4 left), once more when the stream
        # reported the last fill.
        assert p.broker.position_checks == 2
    finally:
        await p.close()


async def test_flatten_when_close_all_answers_then_broker_asked_while_close_orders_registered(
    parts: ExecParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2,000 close orders took 40 ms to register: the first check goes out before them.
    for i, symbol in enumerate(("NVDA", "AMZN", "META", "GOOG")):
        parts.price(symbol, 50)
        await parts.execution.submit(request(f"seed-{i}", symbol, Side.BUY, 1), checked=False)
    await parts.pump()
    monkeypatch.setattr(engine.flatten, "TRACK_SLICE", 1)
    tracked: list[str] = []
    track = parts.execution.track_broker_order

    def counted(record: BrokerOrder, *, strategy: str) -> Order:
        tracked.append(record.symbol)
        return track(record, strategy=strategy)

    monkeypatch.setattr(parts.execution, "track_broker_order", counted)
    registered_when_asked: list[int] = []
    parts.broker.on_open_orders = lambda: registered_when_asked.append(len(tracked))

    report = await flattener(parts).flatten("trader")

    assert report.flat
    assert sorted(tracked) == ["AAPL", "AMZN", "GOOG", "META", "MSFT", "NVDA"]
    assert registered_when_asked[0] < len(tracked)
