from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from engine.domain import Fill, OrderRequest, OrderStatus, Side
from engine.errors import InvalidTransition, OverfillError
from engine.orders import TRANSITIONS, Order, make_client_order_id

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
S = OrderStatus


def make_order(qty: str = "10", status: OrderStatus = S.PENDING) -> Order:
    order = Order.from_request(
        OrderRequest(client_order_id="cid-1", symbol="AAPL", side=Side.BUY, qty=Decimal(qty)),
        created_at=T0,
    )
    order.status = status
    return order


def fill(exec_id: str, qty: str, price: str, *, cid: str = "cid-1") -> Fill:
    return Fill(
        execution_id=exec_id,
        client_order_id=cid,
        broker_order_id="b-1",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(qty),
        price=Decimal(price),
        ts=T0 + timedelta(seconds=1),
    )


ALL_PAIRS = [(a, b) for a in S for b in S]
INVALID_PAIRS = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]
# FILLED needs the full quantity executed; it is reached through fills, tested separately.
VALID_PAIRS = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a] and b is not S.FILLED]


@pytest.mark.parametrize(("start", "target"), INVALID_PAIRS, ids=lambda s: s.value)
def test_transition_when_not_allowed_then_raises_and_state_unchanged(
    start: OrderStatus, target: OrderStatus
) -> None:
    order = make_order(status=start)

    with pytest.raises(InvalidTransition, match=f"from {start.value} to {target.value}"):
        order.transition(target, T0)

    assert order.status is start


@pytest.mark.parametrize(("start", "target"), VALID_PAIRS, ids=lambda s: s.value)
def test_transition_when_allowed_then_moves(start: OrderStatus, target: OrderStatus) -> None:
    order = make_order(status=start)

    order.transition(target, T0 + timedelta(seconds=5), reason="why")

    assert order.status is target
    assert order.updated_at == T0 + timedelta(seconds=5)
    assert order.reason == "why"


def test_terminal_states_when_listed_then_have_no_exits() -> None:
    for status in (S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED):
        assert status.is_terminal
        assert TRANSITIONS[status] == frozenset()


def test_transition_to_filled_when_quantity_not_executed_then_raises() -> None:
    order = make_order(status=S.SUBMITTED)

    with pytest.raises(InvalidTransition, match="0 of 10"):
        order.transition(S.FILLED, T0)

    assert order.status is S.SUBMITTED


def test_apply_fill_when_partial_then_partially_filled_with_average() -> None:
    order = make_order(status=S.SUBMITTED)

    assert order.apply_fill(fill("e1", "4", "100.00"))
    assert order.apply_fill(fill("e2", "2", "103.00"))

    # (4*100 + 2*103) / 6 = 606 / 6 = 101
    assert order.status is S.PARTIALLY_FILLED
    assert order.filled_qty == Decimal(6)
    assert order.avg_fill_price == Decimal(101)
    assert order.remaining_qty == Decimal(4)


def test_apply_fill_when_same_execution_twice_then_second_changes_nothing() -> None:
    order = make_order(status=S.SUBMITTED)
    order.apply_fill(fill("e1", "4", "100"))

    assert order.apply_fill(fill("e1", "4", "100")) is False

    assert order.filled_qty == Decimal(4)
    assert order.avg_fill_price == Decimal(100)


def test_apply_fill_when_duplicate_arrives_after_filled_then_ignored() -> None:
    order = make_order(status=S.SUBMITTED)
    order.apply_fill(fill("e1", "10", "100"))

    assert order.apply_fill(fill("e1", "10", "100")) is False
    assert order.status is S.FILLED


def test_apply_fill_when_out_of_order_then_same_result_as_in_order() -> None:
    in_order, reversed_order = make_order(status=S.SUBMITTED), make_order(status=S.SUBMITTED)
    fills = [fill("e1", "3", "10.10"), fill("e2", "3", "10.40"), fill("e3", "4", "10.25")]

    for f in fills:
        in_order.apply_fill(f)
    for f in reversed(fills):
        reversed_order.apply_fill(f)

    # (3*10.10 + 3*10.40 + 4*10.25) / 10 = (30.30 + 31.20 + 41.00) / 10 = 10.25
    assert in_order.avg_fill_price == reversed_order.avg_fill_price == Decimal("10.25")
    assert in_order.status is reversed_order.status is S.FILLED


def test_apply_fill_when_before_acknowledgement_then_accepted() -> None:
    order = make_order(status=S.PENDING)

    order.apply_fill(fill("e1", "10", "50"))

    assert order.status is S.FILLED


def test_apply_fill_when_partial_during_cancel_pending_then_stays_cancel_pending() -> None:
    order = make_order(status=S.CANCEL_PENDING)

    order.apply_fill(fill("e1", "3", "50"))

    assert order.status is S.CANCEL_PENDING
    assert order.filled_qty == Decimal(3)


def test_apply_fill_when_it_would_overfill_then_raises_and_changes_nothing() -> None:
    order = make_order(status=S.SUBMITTED)
    order.apply_fill(fill("e1", "8", "50"))

    with pytest.raises(OverfillError, match="would fill 11 of 10"):
        order.apply_fill(fill("e2", "3", "50"))

    assert order.filled_qty == Decimal(8)
    assert "e2" not in order.execution_ids


@pytest.mark.parametrize("status", [S.CANCELLED, S.REJECTED, S.EXPIRED])
def test_apply_fill_when_order_terminal_then_raises(status: OrderStatus) -> None:
    order = make_order(status=status)

    with pytest.raises(InvalidTransition, match=f"when {status.value}"):
        order.apply_fill(fill("e9", "1", "50"))


def test_apply_fill_when_for_another_order_then_raises() -> None:
    order = make_order(status=S.SUBMITTED)

    with pytest.raises(InvalidTransition, match="is for order other"):
        order.apply_fill(fill("e1", "1", "50", cid="other"))


def test_apply_fill_when_side_mismatch_then_raises() -> None:
    order = make_order(status=S.SUBMITTED)
    wrong = Fill("e1", "cid-1", "b-1", "AAPL", Side.SELL, Decimal(1), Decimal(50), T0)

    with pytest.raises(InvalidTransition, match="does not match"):
        order.apply_fill(wrong)


def test_apply_fill_when_fractional_then_exact_decimal() -> None:
    order = make_order(qty="0.75", status=S.SUBMITTED)

    order.apply_fill(fill("e1", "0.25", "200.10"))
    order.apply_fill(fill("e2", "0.5", "200.40"))

    # (0.25*200.10 + 0.5*200.40) / 0.75 = (50.025 + 100.2) / 0.75 = 200.30
    assert order.status is S.FILLED
    assert order.avg_fill_price == Decimal("200.30")


def test_client_order_id_when_same_signal_then_same_id() -> None:
    a = make_client_order_id("golden_cross", "AAPL", T0)
    b = make_client_order_id("golden_cross", "AAPL", T0.astimezone(timezone(timedelta(hours=-5))))

    assert a == b
    assert a.startswith("golden_cro-AAPL-20261120T150000-")
    assert len(a) <= 48


def test_client_order_id_when_any_input_differs_then_differs() -> None:
    base = make_client_order_id("golden_cross", "AAPL", T0)

    assert make_client_order_id("golden_cross", "MSFT", T0) != base
    assert make_client_order_id("other", "AAPL", T0) != base
    assert make_client_order_id("golden_cross", "AAPL", T0 + timedelta(minutes=1)) != base
    assert make_client_order_id("golden_cross", "AAPL", T0, tag="retry1") != base


def test_client_order_id_when_naive_time_then_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        make_client_order_id("golden_cross", "AAPL", datetime(2026, 11, 20, 15, 0))
