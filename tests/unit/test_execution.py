"""ExecutionManager: risk gate -> order -> broker, trade updates, fills exactly once, recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.broker.port import TradeUpdate
from engine.domain import Fill, OrderRequest, OrderStatus, OrderType, Side
from engine.errors import BrokerRejected, BrokerTimeout, BrokerUnavailable
from engine.events import EngineError, FillReceived, OrderUpdated, RiskRejected, Severity
from engine.orders import Order
from engine.risk import RejectReason
from tests.support.app import wait_for
from tests.unit.engine_stubs import (
    DAY,
    ExecParts,
    broker_order,
    build_execution,
    ny,
    priced_execution,
    request,
)

D = Decimal
S = OrderStatus
SINCE = ny(10)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[ExecParts]:
    async with priced_execution(tmp_path) as p:
        yield p


def track(p: ExecParts, cid: str, side: Side = Side.BUY, qty: int = 10) -> Order:
    """An order we sent and the broker acknowledged, with no executions yet."""
    order = Order.from_request(request(cid, side=side, qty=qty), p.clock.now())
    order.status = S.SUBMITTED
    order.broker_order_id = f"b-{cid}"
    p.orders.add(order)
    return order


def fill(
    cid: str, eid: str, qty: int | str, price: int | str, *, side: Side = Side.BUY, ts: datetime
) -> Fill:
    return Fill(eid, cid, f"b-{cid}", "AAPL", side, D(qty), D(price), ts)


def update(
    order: Order,
    event: str,
    status: S,
    *,
    execution_id: str | None = None,
    price: Decimal | None = None,
    qty: Decimal | None = None,
) -> TradeUpdate:
    """A venue trade update about ``order``; fill events carry their execution."""
    record = broker_order(order, status, event)
    return TradeUpdate(event, record, ny(11), execution_id=execution_id, price=price, qty=qty)


def drain(p: ExecParts) -> list[TradeUpdate]:
    """Take the queued trade updates without applying them."""
    return [p.updates.get_nowait() for _ in range(p.updates.qsize())]


async def eventually_counter(p: ExecParts, key: str, expected: str) -> None:
    for _ in range(200):
        if await p.journal.get_counter(DAY, key) == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"counter {key} never became {expected}")


# ---- submission ------------------------------------------------------------------------


async def test_submit_when_approved_then_order_reaches_broker_and_fill_books_position(
    parts: ExecParts,
) -> None:
    result = await parts.execution.submit(request("c1"))

    assert result.order is not None
    assert result.rejected is None
    broker_id = parts.exchange.order_by_client_id("c1")
    assert broker_id is not None
    assert result.order.broker_order_id == broker_id.id
    assert result.order.status is S.SUBMITTED  # executions arrive as fills, not snapshots
    assert await parts.pump() == 2  # new, fill
    assert result.order.status is S.FILLED
    assert (result.order.filled_qty, result.order.avg_fill_price) == (D(10), D(100))
    assert parts.portfolio.qty("AAPL") == D(10)
    assert parts.portfolio.cash == D(99_000)
    [received] = parts.of(FillReceived)
    assert (received.position_qty, received.realized_pnl) == (D(10), D(0))
    assert [f.execution_id for f in await parts.journal.load_fills()] == [
        received.fill.execution_id
    ]
    assert parts.days.orders_today == 1
    assert "c1" in parts.execution.known_ids


async def test_submit_when_risk_gate_refuses_then_nothing_sent_and_rejection_published(
    parts: ExecParts,
) -> None:
    await parts.state.halt("trader", "lunch")

    result = await parts.execution.submit(request("c1"))

    assert result.order is None
    assert result.rejected is RejectReason.HALTED
    [rejected] = parts.of(RiskRejected)
    assert (rejected.client_order_id, rejected.reason) == ("c1", "halted")
    assert parts.broker.submitted == []
    assert "c1" not in parts.orders
    assert parts.days.orders_today == 0


async def test_begin_when_approved_then_order_booked_before_any_broker_call_and_sent_after(
    parts: ExecParts,
) -> None:
    order = parts.execution.begin(request("c1"))

    assert isinstance(order, Order)
    assert parts.orders.get("c1") is order
    assert order.status is S.PENDING
    assert "c1" in parts.execution.in_flight
    assert parts.days.orders_today == 1
    assert parts.broker.submitted == [], "the gate and the book only: nothing sent yet"
    result = await parts.execution.send(order, request("c1"))
    assert result.rejected is None
    assert [r.client_order_id for r in parts.broker.submitted] == ["c1"]
    assert order.status is S.SUBMITTED
    assert "c1" not in parts.execution.in_flight


@pytest.mark.parametrize("halt", [True, False], ids=["halted", "reducing"])
async def test_send_when_trading_stopped_after_the_gate_then_order_rejected_not_sent(
    parts: ExecParts, halt: bool
) -> None:
    order = parts.execution.begin(request("c1"))
    assert isinstance(order, Order)
    if halt:
        await parts.state.halt("trader", "lunch")
    else:
        await parts.state.reduce("flatten", "closing")

    result = await parts.execution.send(order, request("c1"))

    assert parts.broker.submitted == []
    assert order.status is S.REJECTED
    assert "before it reached the broker" in order.reason
    assert result.rejected is (RejectReason.HALTED if halt else RejectReason.REDUCING_ONLY)
    [rejected] = parts.of(RiskRejected)
    assert rejected.client_order_id == "c1"
    assert "c1" not in parts.execution.in_flight


async def test_submit_when_client_id_already_used_then_skipped_quietly(
    parts: ExecParts,
) -> None:
    parts.execution.known_ids.add("c1")

    result = await parts.execution.submit(request("c1"))

    assert result.rejected is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert parts.execution.duplicates_skipped == 1
    assert parts.of(RiskRejected) == []
    assert parts.broker.submitted == []


async def test_submit_when_unchecked_while_halted_then_order_is_sent(parts: ExecParts) -> None:
    await parts.state.halt("trader", "stop")

    result = await parts.execution.submit(request("close-1", side=Side.SELL), checked=False)

    assert result.order is not None
    assert [r.client_order_id for r in parts.broker.submitted] == ["close-1"]


async def test_submit_when_broker_already_has_client_id_then_its_order_is_adopted(
    parts: ExecParts,
) -> None:
    existing = parts.exchange.submit(
        "AAPL", Side.BUY, 10, OrderType.LIMIT, limit_price=D(95), client_order_id="c1"
    )
    parts.lose_updates()

    result = await parts.execution.submit(request("c1"))

    assert result.order is not None
    assert result.order.broker_order_id == existing.id
    assert result.order.status is S.SUBMITTED
    assert parts.orders.by_broker_id(existing.id) is result.order
    assert len(parts.exchange.orders_since(SINCE)) == 1  # no second order


async def test_submit_when_broker_rejects_then_order_rejected_with_its_message(
    parts: ExecParts,
) -> None:
    parts.broker.submit_error = BrokerRejected("insufficient buying power")

    result = await parts.execution.submit(request("c1"))

    assert result.order is not None
    assert result.order.status is S.REJECTED
    assert result.order.reason == "insufficient buying power"
    [changed] = parts.of(OrderUpdated)
    assert (changed.status, changed.reason) == (S.REJECTED, "insufficient buying power")
    assert not parts.orders.has_open("AAPL")


async def test_submit_when_broker_unreachable_then_order_stays_pending_and_warning_published(
    parts: ExecParts,
) -> None:
    parts.broker.submit_error = BrokerUnavailable("connection reset")

    result = await parts.execution.submit(request("c1"))

    assert result.order is not None
    assert result.order.status is S.PENDING
    [error] = parts.of(EngineError)
    assert error.component == "broker"
    assert "c1 unconfirmed: connection reset" in error.message
    assert parts.orders.open_qty("AAPL") == D(10)  # still counted against limits


async def test_recover_when_pending_order_never_reached_broker_then_rejected(
    parts: ExecParts,
) -> None:
    parts.broker.submit_error = BrokerUnavailable("connection reset")
    result = await parts.execution.submit(request("c1"))

    applied = await parts.execution.recover(SINCE)

    assert applied == 0
    assert result.order is not None
    assert result.order.status is S.REJECTED
    assert result.order.reason == "never reached the broker"


async def test_recover_when_pending_order_did_reach_broker_then_its_fill_is_applied(
    parts: ExecParts,
) -> None:
    parts.broker.submit_lost = BrokerTimeout("no answer in 10 s")
    result = await parts.execution.submit(request("c1"))
    assert result.order is not None
    assert result.order.status is S.PENDING
    parts.lose_updates()  # the stream dropped too

    applied = await parts.execution.recover(SINCE)

    at_broker = parts.exchange.order_by_client_id("c1")
    assert at_broker is not None
    assert applied == 1
    assert result.order.status is S.FILLED
    assert result.order.broker_order_id == at_broker.id
    assert parts.portfolio.qty("AAPL") == D(10)


async def test_trade_update_when_answer_lost_but_stream_delivers_then_pending_order_filled(
    parts: ExecParts,
) -> None:
    parts.broker.submit_lost = BrokerTimeout("no answer in 10 s")
    result = await parts.execution.submit(request("c1"))

    await parts.pump()

    assert result.order is not None
    assert result.order.status is S.FILLED
    assert parts.portfolio.qty("AAPL") == D(10)


# ---- trade updates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "status", "reason"),
    [
        (["new"], S.SUBMITTED, ""),
        (["accepted", "pending_new"], S.SUBMITTED, ""),
        (["new", "pending_cancel"], S.CANCEL_PENDING, ""),
        (["new", "pending_cancel", "order_cancel_rejected"], S.SUBMITTED, ""),
        (["new", "pending_cancel", "canceled"], S.CANCELLED, "canceled"),
        (["new", "expired"], S.EXPIRED, "expired"),
        (["rejected"], S.REJECTED, "rejected"),
        (["new", "done_for_day", "stopped", "pending_replace", "calculated"], S.SUBMITTED, ""),
        (["new", "done_for_day", "replaced"], S.CANCELLED, "replaced"),
        (["new", "suspended"], S.CANCELLED, "suspended"),
        (["new", "canceled", "new"], S.CANCELLED, "canceled"),
    ],
)
async def test_trade_update_when_venue_events_arrive_then_order_maps_to_our_states(
    parts: ExecParts, events: list[str], status: S, reason: str
) -> None:
    order = Order.from_request(request("c1"), parts.clock.now())
    parts.orders.add(order)
    venue = {
        "new": S.SUBMITTED,
        "accepted": S.SUBMITTED,
        "pending_new": S.SUBMITTED,
        "pending_cancel": S.CANCEL_PENDING,
        "order_cancel_rejected": S.SUBMITTED,
        "canceled": S.CANCELLED,
        "expired": S.EXPIRED,
        "rejected": S.REJECTED,
        "done_for_day": S.SUBMITTED,
        "stopped": S.SUBMITTED,
        "pending_replace": S.SUBMITTED,
        "calculated": S.SUBMITTED,
        "replaced": S.CANCELLED,
        "suspended": S.CANCELLED,
    }

    for event in events:
        await parts.execution.on_trade_update(update(order, event, venue[event]))

    assert order.status is status
    assert order.reason == reason


async def test_trade_update_when_cancel_refused_after_partial_fill_then_back_to_partially_filled(
    parts: ExecParts,
) -> None:
    order = track(parts, "c1")
    partial = update(
        order, "partial_fill", S.PARTIALLY_FILLED, execution_id="e1", price=D(100), qty=D(4)
    )

    await parts.execution.on_trade_update(partial)
    await parts.execution.on_trade_update(update(order, "pending_cancel", S.CANCEL_PENDING))
    assert order.status is S.CANCEL_PENDING
    await parts.execution.on_trade_update(update(order, "order_cancel_rejected", S.SUBMITTED))

    assert order.status is S.PARTIALLY_FILLED
    assert order.filled_qty == D(4)
    assert parts.portfolio.qty("AAPL") == D(4)


async def test_trade_update_when_late_new_arrives_during_cancel_then_cancel_stays_pending(
    parts: ExecParts,
) -> None:
    order = track(parts, "c1")

    await parts.execution.on_trade_update(update(order, "pending_cancel", S.CANCEL_PENDING))
    await parts.execution.on_trade_update(update(order, "new", S.SUBMITTED))
    await parts.execution.on_trade_update(update(order, "accepted", S.SUBMITTED))

    assert order.status is S.CANCEL_PENDING


async def test_recover_when_submit_still_awaiting_its_answer_then_order_not_rejected(
    parts: ExecParts,
) -> None:
    parts.broker.submit_gate = asyncio.Event()
    submitting = asyncio.create_task(parts.execution.submit(request("c1")))
    await wait_for(lambda: len(parts.broker.submitted) == 1)

    await parts.execution.recover(SINCE)  # a stream gap recovered mid-submit
    order = parts.orders.get("c1")
    assert order is not None
    assert order.status is S.PENDING

    parts.broker.submit_gate.set()
    result = await submitting
    await parts.pump()

    assert result.order is order
    assert order.status is S.FILLED
    assert parts.portfolio.qty("AAPL") == D(10)


async def test_submit_when_unchecked_then_daily_order_quota_untouched(parts: ExecParts) -> None:
    before = parts.days.orders_today

    await parts.execution.submit(request("kill-1"), checked=False)
    await parts.execution.submit(request("c2"))

    assert parts.days.orders_today == before + 1


async def test_unknown_order_when_close_all_order_beats_its_answer_then_tracked_as_flatten(
    parts: ExecParts, caplog: pytest.LogCaptureFixture
) -> None:
    close = Order.from_request(request("broker-made", side=Side.SELL), parts.clock.now())

    with caplog.at_level(logging.INFO, logger="engine.execution"):
        with parts.execution.expecting_broker_orders("flatten"):
            await parts.execution.on_trade_update(update(close, "new", S.SUBMITTED))
        stranger = Order.from_request(request("someone-else"), parts.clock.now())
        await parts.execution.on_trade_update(update(stranger, "new", S.SUBMITTED))

    tracked = parts.orders.get("broker-made")
    assert tracked is not None
    assert tracked.strategy == "flatten"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["adopting unknown broker order someone-else"]


async def test_trade_update_when_status_repeats_then_one_order_event(parts: ExecParts) -> None:
    order = Order.from_request(request("c1"), parts.clock.now())
    parts.orders.add(order)

    for _ in range(3):
        await parts.execution.on_trade_update(update(order, "new", S.SUBMITTED))

    assert [e.status for e in parts.of(OrderUpdated)] == [S.SUBMITTED]


async def test_trade_update_when_fill_for_unknown_order_then_refused_and_broker_truth_recovered(
    parts: ExecParts,
) -> None:
    # Placed by hand at the broker; its "new" update was missed, only the fills arrive.
    parts.exchange.submit("AAPL", Side.BUY, 10, client_order_id="manual-1")
    fills = [u for u in drain(parts) if u.event in ("fill", "partial_fill")]
    assert fills

    for one in fills:
        await parts.execution.on_trade_update(one)

    [alert] = parts.of(EngineError)
    assert alert.severity is Severity.CRITICAL
    assert "manual-1" in alert.message
    assert "which we do not know" in alert.message
    [kept] = await parts.journal.quarantined()
    assert kept.source == "trade_update"
    assert '"manual-1"' in kept.payload
    # The REST recovery it asked for adopts the order with the broker's size and its fill.
    await wait_for(lambda: parts.portfolio.qty("AAPL") == D(10))
    adopted = parts.orders.get("manual-1")
    assert adopted is not None
    assert (adopted.qty, adopted.filled_qty, adopted.status) == (D(10), D(10), S.FILLED)
    assert "manual-1" in parts.execution.known_ids
    assert len(await parts.journal.load_fills()) == 1


# ---- fills -----------------------------------------------------------------------------


async def test_apply_fill_when_same_execution_arrives_twice_then_applied_once(
    parts: ExecParts,
) -> None:
    track(parts, "c1")
    execution = fill("c1", "e1", 10, 100, ts=ny(11))

    assert await parts.execution.apply_fill(execution) is True
    assert await parts.execution.apply_fill(execution) is False

    assert parts.portfolio.qty("AAPL") == D(10)
    assert parts.portfolio.cash == D(99_000)
    assert parts.execution.fills_applied == 1
    assert len(parts.of(FillReceived)) == 1


async def test_apply_fill_when_engine_restarted_on_same_journal_then_known_fill_skipped(
    tmp_path: Path,
) -> None:
    first = await build_execution(tmp_path)
    try:
        await first.execution.apply_fill(fill("c1", "e1", 10, 100, ts=ny(11)))
    finally:
        await first.close()
    second = await build_execution(tmp_path)
    try:
        applied = await second.execution.apply_fill(fill("c1", "e1", 10, 100, ts=ny(11)))

        assert applied is False
        assert second.portfolio.qty("AAPL") == D(0)
    finally:
        await second.close()


async def test_apply_fill_when_order_unknown_then_order_adopted_from_the_fill(
    parts: ExecParts,
) -> None:
    applied = await parts.execution.apply_fill(fill("ghost-1", "e1", 10, 100, ts=ny(11)))

    assert applied is True
    order = parts.orders.get("ghost-1")
    assert order is not None
    assert (order.qty, order.filled_qty, order.status) == (D(10), D(10), S.FILLED)
    assert "ghost-1" in parts.execution.known_ids
    assert parts.portfolio.qty("AAPL") == D(10)


async def test_apply_fill_when_fill_exceeds_known_order_then_overfill_reported_not_raised(
    parts: ExecParts,
) -> None:
    order = track(parts, "c1")
    await parts.execution.apply_fill(fill("c1", "e1", 6, 100, ts=ny(11)))

    applied = await parts.execution.apply_fill(fill("c1", "e2", 5, 100, ts=ny(11, 1)))

    assert applied is True
    assert parts.portfolio.qty("AAPL") == D(11)  # the execution is real money
    errors = [e for e in parts.of(EngineError) if e.component == "orders"]
    assert len(errors) == 1
    assert "would fill 11 of 10" in errors[0].message
    assert order.qty == D(10)


async def test_apply_fill_when_order_already_cancelled_then_fill_booked_and_reported(
    parts: ExecParts,
) -> None:
    order = track(parts, "c1")
    parts.execution.force_close(order, "canceled")

    applied = await parts.execution.apply_fill(fill("c1", "e1", 10, 100, ts=ny(11)))

    assert applied is True
    assert parts.portfolio.qty("AAPL") == D(10)
    [error] = parts.of(EngineError)
    assert error.component == "orders"
    assert "cancelled" in error.message


async def test_apply_fill_when_position_opened_today_is_closed_then_one_day_trade_counted(
    parts: ExecParts,
) -> None:
    track(parts, "open-1")
    track(parts, "close-1", side=Side.SELL)
    await parts.execution.apply_fill(fill("open-1", "e1", 10, 100, ts=ny(10)))

    await parts.execution.apply_fill(fill("close-1", "e2", 4, 101, side=Side.SELL, ts=ny(10, 30)))
    await parts.execution.apply_fill(fill("close-1", "e3", 6, 101, side=Side.SELL, ts=ny(10, 31)))

    assert parts.days.day_trades_5d() == 1  # one closing order, however many executions
    await eventually_counter(parts, "day_trades", "1")


async def test_apply_fill_when_position_opened_yesterday_is_closed_then_no_day_trade(
    parts: ExecParts,
) -> None:
    track(parts, "open-1")
    track(parts, "close-1", side=Side.SELL)
    yesterday = ny(15, day=DAY - timedelta(days=1))
    await parts.execution.apply_fill(fill("open-1", "e1", 10, 100, ts=yesterday))

    await parts.execution.apply_fill(fill("close-1", "e2", 10, 101, side=Side.SELL, ts=ny(10)))

    assert parts.days.day_trades_5d() == 0


# ---- recovery --------------------------------------------------------------------------


async def test_recover_when_fill_was_missed_then_applied_and_order_filled(
    parts: ExecParts,
) -> None:
    result = await parts.execution.submit(request("c1"))
    parts.lose_updates()

    applied = await parts.execution.recover(SINCE)
    again = await parts.execution.recover(SINCE)

    assert (applied, again) == (1, 0)
    assert result.order is not None
    assert result.order.status is S.FILLED
    assert parts.portfolio.qty("AAPL") == D(10)


async def test_recover_when_cancel_was_missed_then_order_takes_broker_terminal_state(
    parts: ExecParts,
) -> None:
    limit = OrderRequest("c1", "AAPL", Side.BUY, D(10), OrderType.LIMIT, D(97), strategy="t")
    result = await parts.execution.submit(limit)
    await parts.pump()
    assert result.order is not None
    assert result.order.status is S.SUBMITTED
    parts.exchange.cancel(result.order.broker_order_id)
    parts.lose_updates()

    await parts.execution.recover(SINCE)

    assert result.order.status is S.CANCELLED
    assert result.order.reason == "canceled"


async def test_recover_when_executions_cannot_be_matched_then_broker_totals_are_authoritative(
    parts: ExecParts,
) -> None:
    result = await parts.execution.submit(request("c1"))
    parts.lose_updates()
    parts.broker.hide_fills = True

    applied = await parts.execution.recover(SINCE)

    assert applied == 0
    assert result.order is not None
    assert (result.order.status, result.order.filled_qty) == (S.FILLED, D(10))
    assert result.order.avg_fill_price == D(100)
    assert parts.of(OrderUpdated)[-1].status is S.FILLED


async def test_recover_when_broker_has_unknown_open_order_then_adopted(parts: ExecParts) -> None:
    placed = parts.exchange.submit(
        "MSFT", Side.BUY, 3, OrderType.LIMIT, limit_price=D(190), client_order_id="manual-1"
    )
    parts.lose_updates()

    await parts.execution.recover(SINCE)

    adopted = parts.orders.get("manual-1")
    assert adopted is not None
    assert (adopted.status, adopted.qty, adopted.broker_order_id) == (S.SUBMITTED, D(3), placed.id)
    assert parts.orders.has_open("MSFT")
    assert "manual-1" in parts.execution.known_ids


async def test_recover_when_unknown_order_filled_in_two_executions_then_order_has_both(
    tmp_path: Path,
) -> None:
    p = await build_execution(tmp_path, max_fill="6")
    try:
        p.price("AAPL", 100)
        p.exchange.submit("AAPL", Side.BUY, 10, client_order_id="lost-1")  # 6 @ 100
        p.price("AAPL", 110)  # the remaining 4 @ 110
        p.lose_updates()

        applied = await p.execution.recover(SINCE)

        assert applied == 2
        assert p.portfolio.qty("AAPL") == D(10)
        order = p.orders.get("lost-1")
        assert order is not None
        assert (order.qty, order.filled_qty, order.status) == (D(10), D(10), S.FILLED)
        assert order.avg_fill_price == D(104)
    finally:
        await p.close()


# ---- unchecked submissions and adoption helpers ----------------------------------------


async def test_submit_when_unchecked_reuses_a_client_id_then_filled_order_is_not_replaced(
    parts: ExecParts,
) -> None:
    first = await parts.execution.submit(request("flatten-1", side=Side.BUY), checked=False)
    await parts.pump()
    assert first.order is not None
    assert first.order.status is S.FILLED

    await parts.execution.submit(request("flatten-1", side=Side.BUY), checked=False)
    await parts.pump()

    assert parts.orders.get("flatten-1") is first.order
    assert parts.orders.open_orders() == []  # no phantom order blocking the symbol


async def test_track_broker_order_when_known_then_same_order_else_adopted_with_strategy(
    parts: ExecParts,
) -> None:
    known = track(parts, "c1")
    stranger = Order.from_request(request("close-all-1", side=Side.SELL), parts.clock.now())
    record = broker_order(stranger, S.FILLED, "filled", filled=D(10), avg=D(100))

    assert (
        parts.execution.track_broker_order(broker_order(known, S.SUBMITTED, "new"), strategy="x")
        is known
    )
    adopted = parts.execution.track_broker_order(record, strategy="flatten")

    assert adopted.strategy == "flatten"
    # Its executions will arrive as fills, so it starts with none.
    assert (adopted.status, adopted.filled_qty) == (S.SUBMITTED, D(0))


# ---- waiting ---------------------------------------------------------------------------


async def test_wait_for_change_when_order_changes_then_wakes_before_timeout(
    parts: ExecParts,
) -> None:
    order = track(parts, "c1")
    waiter = asyncio.get_running_loop().create_task(parts.execution.wait_for_change(30.0))
    await asyncio.sleep(0)  # let the waiter register

    parts.execution.force_close(order, "gone")

    await asyncio.wait_for(waiter, timeout=2.0)


async def test_wait_for_change_when_nothing_changes_then_returns_after_timeout(
    parts: ExecParts,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    await parts.execution.wait_for_change(0.05)

    assert 0.04 <= loop.time() - started < 2.0
