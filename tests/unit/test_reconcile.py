"""Reconciler: the broker is the truth; every difference is corrected and published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain import Fill, OrderRequest, OrderStatus, OrderType, Side
from engine.events import ReconcileDrift
from engine.orders import Order
from engine.reconcile import CASH_BASE, Reconciler, ReconcileResult
from tests.unit.engine_stubs import ExecParts, ny, priced_execution, request

D = Decimal
S = OrderStatus
LATER = ny(11, 5)
SINCE = ny(11, 1)  # after everything the tests place at 11:00


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[ExecParts]:
    async with priced_execution(tmp_path) as p:
        yield p


def reconciler(p: ExecParts) -> Reconciler:
    return Reconciler(
        broker=p.broker,
        execution=p.execution,
        portfolio=p.portfolio,
        orders=p.orders,
        bus=p.bus,
        clock=p.clock,
    )


def drifts(result: ReconcileResult) -> list[tuple[str, str, str, str]]:
    return [(d.kind, d.key, d.local, d.broker) for d in result.drifts]


async def test_run_when_positions_differ_then_broker_positions_adopted_and_drift_published(
    parts: ExecParts,
) -> None:
    # Only we think we hold AAPL; only the broker holds MSFT (its fill is older than `since`).
    parts.portfolio.apply_fill(Fill("x1", "c0", "b0", "AAPL", Side.BUY, D(10), D(100), ny(11)))
    parts.exchange.submit("MSFT", Side.BUY, 5, client_order_id="manual-1")
    parts.lose_updates()
    parts.clock.set(LATER)

    result = await reconciler(parts).run(SINCE, at_startup=True)

    assert drifts(result) == [
        ("position", "AAPL", "10 @ 100", "0 @ 0"),
        ("position", "MSFT", "0 @ 0", "5 @ 200"),
    ]
    assert parts.portfolio.qty("AAPL") == D(0)
    msft = parts.portfolio.position("MSFT")
    assert msft is not None
    assert (msft.qty, msft.avg_price) == (D(5), D(200))
    assert parts.of(ReconcileDrift) == result.drifts
    assert not result.clean
    assert result.summary() == "1 position, 0 open orders, 0 missed fills recovered, 2 corrected"


async def test_run_when_only_a_fill_was_missed_then_recovered_marked_and_clean(
    parts: ExecParts,
) -> None:
    await parts.execution.submit(request("c1"))
    parts.lose_updates()
    parts.exchange.on_price("AAPL", D(105), parts.clock.now())  # a price our book has not seen

    result = await reconciler(parts).run(ny(10), at_startup=False)

    assert result.clean
    assert result.fills_recovered == 1
    assert parts.portfolio.qty("AAPL") == D(10)
    assert parts.portfolio.last_price("AAPL") == D(105)  # marked at the broker's price
    assert parts.of(ReconcileDrift) == []
    assert result.summary() == "1 position, 0 open orders, 1 missed fill recovered, no drift"


async def test_run_when_cash_differs_at_first_startup_then_adopted_without_drift(
    parts: ExecParts,
) -> None:
    # A first start knows no deposits: the broker's cash is where the book starts.
    parts.portfolio.set_cash(D(123))

    result = await reconciler(parts).run(SINCE, at_startup=True)

    assert result.clean
    assert parts.portfolio.cash == D("100000.00")
    assert await parts.journal.get_meta(CASH_BASE) == "100000.00"


async def test_run_when_restarted_cash_is_a_cent_off_the_broker_then_drift_published(
    parts: ExecParts,
) -> None:
    # The journal's fills plus its cash base rebuild the cash we expect after a restart; a
    # cent or more away from the broker's is drift, even at start-up.
    await parts.execution.submit(request("c1"))  # buys 10 AAPL at 100: -1,000.00
    await parts.pump()
    await parts.journal.set_meta(CASH_BASE, "99999.988")

    result = await reconciler(parts).run(SINCE, at_startup=True)

    assert drifts(result) == [("cash", "cash", "$98,999.99", "$99,000.00")]
    assert parts.portfolio.cash == D("99000.00")
    assert await parts.journal.get_meta(CASH_BASE) == "100000.00"  # the next start is clean
    assert (await reconciler(parts).run(SINCE, at_startup=True)).clean


async def test_run_when_cash_is_off_by_less_than_a_cent_then_adopted_without_drift(
    parts: ExecParts,
) -> None:
    await parts.journal.set_meta(CASH_BASE, "100000.006")

    result = await reconciler(parts).run(SINCE, at_startup=True)

    assert result.clean
    assert parts.portfolio.cash == D("100000.00")


async def test_run_when_cash_differs_later_then_adopted_and_drift_published(
    parts: ExecParts,
) -> None:
    parts.portfolio.set_cash(D(123))

    result = await reconciler(parts).run(SINCE, at_startup=False)

    assert drifts(result) == [("cash", "cash", "$123.00", "$100,000.00")]
    assert parts.portfolio.cash == D("100000.00")
    assert parts.of(ReconcileDrift) == result.drifts


async def test_run_when_broker_has_open_order_we_never_knew_then_adopted_and_drift_published(
    parts: ExecParts,
) -> None:
    placed = parts.exchange.submit(
        "MSFT", Side.BUY, 3, OrderType.LIMIT, limit_price=D(190), client_order_id="manual-1"
    )
    parts.lose_updates()
    parts.clock.set(LATER)

    result = await reconciler(parts).run(SINCE)

    assert drifts(result) == [("order", "manual-1", "unknown", "new")]
    adopted = parts.orders.get("manual-1")
    assert adopted is not None
    assert (adopted.status, adopted.broker_order_id) == (S.SUBMITTED, placed.id)
    assert result.open_orders == 1


async def test_run_when_unknown_open_order_is_inside_recovery_window_then_drift_published(
    parts: ExecParts,
) -> None:
    parts.exchange.submit(
        "MSFT", Side.BUY, 3, OrderType.LIMIT, limit_price=D(190), client_order_id="manual-1"
    )
    parts.lose_updates()

    result = await reconciler(parts).run(ny(10), at_startup=True)

    assert "manual-1" in parts.orders
    assert [(d.kind, d.key) for d in result.drifts] == [("order", "manual-1")]


async def test_run_when_local_open_order_was_cancelled_at_broker_then_closed_with_drift(
    parts: ExecParts,
) -> None:
    limit = OrderRequest("c1", "AAPL", Side.BUY, D(10), OrderType.LIMIT, D(97), strategy="t")
    result = await parts.execution.submit(limit)
    await parts.pump()
    assert result.order is not None
    parts.exchange.cancel(result.order.broker_order_id)
    parts.lose_updates()
    parts.clock.set(LATER)

    outcome = await reconciler(parts).run(SINCE)

    assert result.order.status is S.CANCELLED
    assert result.order.reason == "canceled"
    assert drifts(outcome) == [("order", "c1", "submitted", "cancelled")]


async def test_run_when_broker_never_heard_of_local_open_order_then_force_closed(
    parts: ExecParts,
) -> None:
    ghost = Order.from_request(request("ghost-1"), parts.clock.now())
    ghost.status = S.SUBMITTED
    parts.orders.add(ghost)

    result = await reconciler(parts).run(SINCE)

    assert ghost.status is S.CANCELLED
    assert ghost.reason == "not open at the broker (unknown)"
    assert drifts(result) == [("order", "ghost-1", "submitted", "cancelled")]
    assert not parts.orders.has_open("AAPL")


async def test_run_when_order_is_being_submitted_meanwhile_then_it_is_not_closed(
    parts: ExecParts,
) -> None:
    in_flight = Order.from_request(request("p1"), parts.clock.now())  # PENDING: no answer yet

    def submit_meanwhile() -> None:
        parts.orders.add(in_flight)

    parts.broker.on_open_orders = submit_meanwhile

    result = await reconciler(parts).run(ny(10))

    assert in_flight.status is S.PENDING
    assert result.clean
