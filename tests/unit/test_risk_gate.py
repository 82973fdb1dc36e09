from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from config.settings import RiskSettings
from engine.domain import OrderRequest, OrderType, Side, TradingState
from engine.risk import (
    LossHaltLatch,
    RejectReason,
    RiskContext,
    RiskDecision,
    RiskGate,
    loss_limit_breached,
    order_only_reduces,
    reduces_position,
)

D = Decimal


def make_limits(**overrides: Any) -> RiskSettings:
    values: dict[str, Any] = {
        "allowed_symbols": ["AAPL", "MSFT"],
        "max_position_qty": D(1000),
        "max_position_notional": D(50_000),
        "max_gross_exposure": D(200_000),
        "max_order_notional": D(25_000),
        "max_price_deviation_pct": D(5),
        "daily_loss_limit": D(2000),
        "max_orders_per_day": 200,
        "pdt_guard": True,
        "require_market_open": True,
    }
    values.update(overrides)
    return RiskSettings(_env_file=None, **values)  # type: ignore[call-arg]


def make_gate(**overrides: Any) -> RiskGate:
    limits = make_limits(**overrides)
    return RiskGate(limits, limits.allowed_symbols)


def passing_ctx(**overrides: Any) -> RiskContext:
    """A context in which a buy of 10 AAPL at 100 passes every check."""
    ctx = RiskContext(
        state=TradingState.ACTIVE,
        market_open=True,
        position_qty=D(0),
        open_order_qty=D(0),
        last_price=D(100),
        gross_exposure=D(0),
        buying_power=D(100_000),
        equity=D(100_000),
        day_pnl=D(0),
        orders_today=0,
        day_trades_5d=0,
        position_opened_today=False,
        known_client_order_ids=set(),
    )
    return replace(ctx, **overrides)


def order(
    side: Side = Side.BUY,
    qty: str | int = 10,
    symbol: str = "AAPL",
    limit: str | None = None,
    coid: str = "c1",
) -> OrderRequest:
    return OrderRequest(
        client_order_id=coid,
        symbol=symbol,
        side=side,
        qty=D(qty),
        order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
        limit_price=D(limit) if limit is not None else None,
    )


def assert_rejected(decision: RiskDecision, reason: RejectReason) -> None:
    assert not decision.approved
    assert decision.reason is reason, decision
    assert decision.detail


# --- approve ---------------------------------------------------------------------------------


def test_check_when_every_condition_passes_then_approved() -> None:
    decision = make_gate().check(order(), passing_ctx())

    assert decision == RiskDecision(True, None, "")


def test_check_when_limit_order_within_every_limit_then_approved() -> None:
    decision = make_gate().check(order(limit="101.50"), passing_ctx())

    assert decision.approved


# --- one reason each ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        order(qty=0),
        order(qty=-5),
        order(qty="NaN"),
        OrderRequest("c1", "AAPL", Side.BUY, D(10), OrderType.LIMIT, None),
        order(limit="0"),
        order(limit="-1"),
        order(coid=""),
        order(symbol=""),
    ],
    ids=[
        "zero",
        "negative",
        "nan",
        "limit-none",
        "limit-zero",
        "limit-negative",
        "no-id",
        "no-sym",
    ],
)
def test_check_when_order_malformed_then_invalid_order(request_: OrderRequest) -> None:
    assert_rejected(make_gate().check(request_, passing_ctx()), RejectReason.INVALID_ORDER)


def test_check_when_client_order_id_known_then_duplicate() -> None:
    decision = make_gate().check(order(), passing_ctx(known_client_order_ids={"c1"}))

    assert_rejected(decision, RejectReason.DUPLICATE_CLIENT_ORDER_ID)
    assert "c1" in decision.detail


def test_check_when_halted_then_halted() -> None:
    assert_rejected(
        make_gate().check(order(), passing_ctx(state=TradingState.HALTED)), RejectReason.HALTED
    )


def test_check_when_reducing_and_order_opens_from_flat_then_reducing_only() -> None:
    decision = make_gate().check(order(), passing_ctx(state=TradingState.REDUCING))

    assert_rejected(decision, RejectReason.REDUCING_ONLY)


def test_check_when_market_closed_then_market_closed() -> None:
    assert_rejected(
        make_gate().check(order(), passing_ctx(market_open=False)), RejectReason.MARKET_CLOSED
    )


def test_check_when_market_closed_but_not_required_open_then_approved() -> None:
    gate = make_gate(require_market_open=False)

    assert gate.check(order(), passing_ctx(market_open=False)).approved


def test_check_when_symbol_not_allowed_then_symbol_not_allowed() -> None:
    decision = make_gate().check(order(symbol="TSLA"), passing_ctx())

    assert_rejected(decision, RejectReason.SYMBOL_NOT_ALLOWED)
    assert decision.detail == "TSLA is not an allowed symbol (AAPL, MSFT)"


def test_check_when_symbol_lower_case_but_allowed_then_approved() -> None:
    assert make_gate().check(order(symbol="aapl"), passing_ctx()).approved


def test_check_when_no_last_price_for_market_order_then_no_price() -> None:
    assert_rejected(make_gate().check(order(), passing_ctx(last_price=None)), RejectReason.NO_PRICE)


def test_check_when_last_price_zero_then_no_price() -> None:
    assert_rejected(make_gate().check(order(), passing_ctx(last_price=D(0))), RejectReason.NO_PRICE)


def test_check_when_no_last_price_but_limit_price_then_approved() -> None:
    assert make_gate().check(order(limit="100"), passing_ctx(last_price=None)).approved


def test_check_when_order_notional_over_limit_then_fat_finger_notional() -> None:
    # 251 * 100 = 25,100 > 25,000
    decision = make_gate().check(order(qty=251), passing_ctx())

    assert_rejected(decision, RejectReason.FAT_FINGER_NOTIONAL)
    assert decision.detail == "order would be worth $25,100.00; limit $25,000.00"


def test_check_when_order_notional_exactly_at_limit_then_approved() -> None:
    assert make_gate().check(order(qty=250), passing_ctx()).approved


def test_check_when_limit_notional_over_limit_then_fat_finger_notional_uses_limit_price() -> None:
    # 240 * 104.50 = 25,080 > 25,000 although 240 * last 100 = 24,000 would pass.
    decision = make_gate().check(order(qty=240, limit="104.50"), passing_ctx())

    assert_rejected(decision, RejectReason.FAT_FINGER_NOTIONAL)


@pytest.mark.parametrize(("limit", "word"), [("105.01", "above"), ("94.99", "below")])
def test_check_when_limit_too_far_from_last_then_fat_finger_price(limit: str, word: str) -> None:
    decision = make_gate().check(order(limit=limit), passing_ctx())

    assert_rejected(decision, RejectReason.FAT_FINGER_PRICE)
    assert decision.detail == f"limit {limit} is 5.01% {word} the last price 100; limit 5%"


@pytest.mark.parametrize("limit", ["105", "95"])
def test_check_when_limit_exactly_at_max_deviation_then_approved(limit: str) -> None:
    assert make_gate().check(order(limit=limit), passing_ctx()).approved


def test_check_when_position_qty_over_limit_then_max_position_qty() -> None:
    # 900 held + 95 on open orders + 10 = 1,005 > 1,000; at 10 every notional limit passes.
    ctx = passing_ctx(
        position_qty=D(900), open_order_qty=D(95), last_price=D(10), gross_exposure=D(9000)
    )

    decision = make_gate().check(order(), ctx)

    assert_rejected(decision, RejectReason.MAX_POSITION_QTY)
    assert decision.detail == (
        "position would be 1,005 AAPL (counting 95 on open orders); limit 1,000"
    )


def test_check_when_short_position_qty_over_limit_then_max_position_qty() -> None:
    ctx = passing_ctx(position_qty=D(-995), last_price=D(10), gross_exposure=D(9950))

    decision = make_gate().check(order(side=Side.SELL), ctx)

    assert_rejected(decision, RejectReason.MAX_POSITION_QTY)
    assert decision.detail == "position would be 1,005 AAPL short; limit 1,000"


def test_check_when_position_qty_exactly_at_limit_then_approved() -> None:
    ctx = passing_ctx(position_qty=D(990), last_price=D(10), gross_exposure=D(9900))

    assert make_gate().check(order(), ctx).approved


def test_check_when_position_notional_over_limit_then_max_position_notional() -> None:
    # (400 + 101) * 100 = 50,100 > 50,000; the order itself is 10,100.
    ctx = passing_ctx(position_qty=D(400), gross_exposure=D(40_000))

    decision = make_gate().check(order(qty=101), ctx)

    assert_rejected(decision, RejectReason.MAX_POSITION_NOTIONAL)
    assert decision.detail == "AAPL position would be worth $50,100.00; limit $50,000.00"


def test_check_when_gross_exposure_over_limit_then_max_gross_exposure() -> None:
    # 195,000 elsewhere + 60 * 100 = 201,000 > 200,000
    decision = make_gate().check(order(qty=60), passing_ctx(gross_exposure=D(195_000)))

    assert_rejected(decision, RejectReason.MAX_GROSS_EXPOSURE)
    assert decision.detail == "gross exposure would be $201,000.00; limit $200,000.00"


def test_check_when_adding_to_position_then_gross_counts_only_the_increase() -> None:
    # 100 AAPL held (10,000 already in the 190,000); +90 -> 190,000 + 9,000 = 199,000.
    ctx = passing_ctx(position_qty=D(100), gross_exposure=D(190_000))

    assert make_gate().check(order(qty=90), ctx).approved
    assert_rejected(make_gate().check(order(qty=101), ctx), RejectReason.MAX_GROSS_EXPOSURE)


def test_check_when_order_costs_more_than_buying_power_then_buying_power() -> None:
    decision = make_gate().check(order(qty=60), passing_ctx(buying_power=D(5999)))

    assert_rejected(decision, RejectReason.BUYING_POWER)
    assert decision.detail == "order needs $6,000.00 of buying power; $5,999.00 available"


def test_check_when_order_costs_exactly_buying_power_then_approved() -> None:
    assert make_gate().check(order(qty=60), passing_ctx(buying_power=D(6000))).approved


@pytest.mark.parametrize(("buying_power", "approved"), [("2999.99", False), ("3000", True)])
def test_check_when_order_flips_then_only_the_opening_part_needs_buying_power(
    buying_power: str, approved: bool
) -> None:
    # Long 50, sell 80: 50 close, 30 open short -> 30 * 100 = 3,000 needed.
    ctx = passing_ctx(position_qty=D(50), gross_exposure=D(5000), buying_power=D(buying_power))

    decision = make_gate().check(order(side=Side.SELL, qty=80), ctx)

    assert decision.approved is approved
    if not approved:
        assert decision.reason is RejectReason.BUYING_POWER


@pytest.mark.parametrize("pnl", ["-2000", "-2000.01", "-9000"])
def test_check_when_day_loss_at_or_past_limit_then_daily_loss_limit(pnl: str) -> None:
    decision = make_gate().check(order(), passing_ctx(day_pnl=D(pnl)))

    assert_rejected(decision, RejectReason.DAILY_LOSS_LIMIT)


def test_check_when_day_loss_just_inside_limit_then_approved() -> None:
    assert make_gate().check(order(), passing_ctx(day_pnl=D("-1999.99"))).approved


def test_check_when_day_pnl_unknown_then_approved() -> None:
    assert make_gate().check(order(), passing_ctx(day_pnl=None)).approved


def test_check_when_orders_today_at_limit_then_max_orders_per_day() -> None:
    decision = make_gate().check(order(), passing_ctx(orders_today=200))

    assert_rejected(decision, RejectReason.MAX_ORDERS_PER_DAY)
    assert decision.detail == "200 orders sent today; limit 200"


def test_check_when_orders_today_one_below_limit_then_approved() -> None:
    assert make_gate().check(order(), passing_ctx(orders_today=199)).approved


def pdt_ctx(**overrides: Any) -> RiskContext:
    """Long 10 AAPL opened today, 3 day trades in 5 days, equity just under 25,000."""
    values: dict[str, Any] = {
        "position_qty": D(10),
        "gross_exposure": D(1000),
        "equity": D("24999.99"),
        "day_trades_5d": 3,
        "position_opened_today": True,
    }
    values.update(overrides)
    return passing_ctx(**values)


def test_check_when_closing_same_day_position_under_pdt_limits_then_pattern_day_trader() -> None:
    decision = make_gate().check(order(side=Side.SELL), pdt_ctx())

    assert_rejected(decision, RejectReason.PATTERN_DAY_TRADER)
    assert decision.detail == (
        "closing today's AAPL position would be day trade 4 in 5 days with equity "
        "$24,999.99 (under $25,000.00)"
    )


def test_check_when_partly_closing_same_day_position_then_pattern_day_trader() -> None:
    decision = make_gate().check(order(side=Side.SELL, qty=4), pdt_ctx())

    assert_rejected(decision, RejectReason.PATTERN_DAY_TRADER)


def test_check_when_flipping_same_day_position_then_pattern_day_trader() -> None:
    decision = make_gate().check(order(side=Side.SELL, qty=15), pdt_ctx())

    assert_rejected(decision, RejectReason.PATTERN_DAY_TRADER)


@pytest.mark.parametrize(
    ("overrides", "side"),
    [
        ({"equity": D(25_000)}, Side.SELL),
        ({"day_trades_5d": 2}, Side.SELL),
        ({"position_opened_today": False}, Side.SELL),
        ({}, Side.BUY),  # adding to a same-day position is not a day trade
    ],
    ids=["equity-25k", "two-day-trades", "opened-earlier", "adding"],
)
def test_check_when_pdt_condition_missing_then_approved(
    overrides: dict[str, Any], side: Side
) -> None:
    assert make_gate().check(order(side=side), pdt_ctx(**overrides)).approved


def test_check_when_pdt_guard_off_then_same_day_close_approved() -> None:
    assert make_gate(pdt_guard=False).check(order(side=Side.SELL), pdt_ctx()).approved


# --- ordering -----------------------------------------------------------------------------------


def everything_wrong_ctx(state: TradingState) -> RiskContext:
    return passing_ctx(
        state=state,
        market_open=False,
        last_price=None,
        gross_exposure=D(1_000_000),
        buying_power=D(0),
        day_pnl=D(-10_000),
        orders_today=10_000,
        known_client_order_ids=set(),
    )


def test_check_when_halted_and_everything_else_wrong_then_halted() -> None:
    decision = make_gate().check(
        order(symbol="TSLA", qty=100_000), everything_wrong_ctx(TradingState.HALTED)
    )

    assert decision.reason is RejectReason.HALTED


def test_check_when_halted_and_order_invalid_then_invalid_order() -> None:
    decision = make_gate().check(order(qty=0), everything_wrong_ctx(TradingState.HALTED))

    assert decision.reason is RejectReason.INVALID_ORDER


def test_check_when_halted_and_id_duplicate_then_duplicate() -> None:
    ctx = replace(everything_wrong_ctx(TradingState.HALTED), known_client_order_ids={"c1"})

    assert make_gate().check(order(), ctx).reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID


def test_check_when_halted_and_order_only_reduces_then_still_halted() -> None:
    ctx = passing_ctx(state=TradingState.HALTED, position_qty=D(100), gross_exposure=D(10_000))

    decision = make_gate().check(order(side=Side.SELL, qty=100), ctx)

    assert decision.reason is RejectReason.HALTED


def test_check_when_reducing_only_and_market_closed_then_reducing_only_first() -> None:
    ctx = passing_ctx(state=TradingState.REDUCING, market_open=False)

    assert make_gate().check(order(), ctx).reason is RejectReason.REDUCING_ONLY


def test_check_when_limit_price_far_and_position_too_big_then_fat_finger_price_first() -> None:
    ctx = passing_ctx(position_qty=D(995), last_price=D(10), gross_exposure=D(9950))

    decision = make_gate().check(order(limit="20"), ctx)

    assert decision.reason is RejectReason.FAT_FINGER_PRICE


def test_check_when_loss_limit_and_max_orders_both_hit_then_loss_limit_first() -> None:
    ctx = passing_ctx(day_pnl=D(-3000), orders_today=500)

    assert make_gate().check(order(), ctx).reason is RejectReason.DAILY_LOSS_LIMIT


# --- reducing orders ----------------------------------------------------------------------------


def over_limits_ctx(state: TradingState) -> RiskContext:
    """Long 2,000 (over qty and notional limits), gross over its limit, no buying power,
    past the loss limit, and no market data."""
    return passing_ctx(
        state=state,
        position_qty=D(2000),
        last_price=None,
        gross_exposure=D(500_000),
        buying_power=D(0),
        day_pnl=D(-10_000),
    )


@pytest.mark.parametrize("state", [TradingState.ACTIVE, TradingState.REDUCING])
def test_check_when_order_only_reduces_then_exposure_limits_do_not_apply(
    state: TradingState,
) -> None:
    gate = make_gate()
    ctx = over_limits_ctx(state)

    assert gate.check(order(side=Side.SELL, qty=500), ctx).approved
    assert gate.check(order(side=Side.SELL, qty=2000), ctx).approved  # exact close


def test_check_when_reducing_a_symbol_no_longer_allowed_then_approved() -> None:
    ctx = passing_ctx(state=TradingState.REDUCING, position_qty=D(10), gross_exposure=D(1000))

    assert make_gate().check(order(side=Side.SELL, symbol="TSLA"), ctx).approved


def test_check_when_closing_a_position_bigger_than_max_order_notional_then_approved() -> None:
    # 400 * 100 = 40,000 > 25,000 per order, but it only closes a position.
    ctx = passing_ctx(position_qty=D(400), gross_exposure=D(40_000))

    assert make_gate().check(order(side=Side.SELL, qty=400), ctx).approved


def test_check_when_reducing_order_limit_price_far_from_last_then_fat_finger_price() -> None:
    ctx = passing_ctx(state=TradingState.REDUCING, position_qty=D(100), gross_exposure=D(10_000))

    decision = make_gate().check(order(side=Side.SELL, qty=100, limit="90"), ctx)

    assert decision.reason is RejectReason.FAT_FINGER_PRICE


def test_check_when_reducing_order_and_orders_today_at_limit_then_max_orders_per_day() -> None:
    ctx = passing_ctx(position_qty=D(100), gross_exposure=D(10_000), orders_today=200)

    decision = make_gate().check(order(side=Side.SELL, qty=100), ctx)

    assert decision.reason is RejectReason.MAX_ORDERS_PER_DAY


def test_check_when_reducing_order_and_market_closed_then_market_closed() -> None:
    ctx = passing_ctx(position_qty=D(100), gross_exposure=D(10_000), market_open=False)

    decision = make_gate().check(order(side=Side.SELL, qty=100), ctx)

    assert decision.reason is RejectReason.MARKET_CLOSED


def test_check_when_reducing_state_and_same_day_close_under_pdt_then_pattern_day_trader() -> None:
    decision = make_gate().check(order(side=Side.SELL), pdt_ctx(state=TradingState.REDUCING))

    assert decision.reason is RejectReason.PATTERN_DAY_TRADER


def test_check_when_reducing_state_and_order_adds_to_position_then_reducing_only() -> None:
    ctx = passing_ctx(state=TradingState.REDUCING, position_qty=D(100), gross_exposure=D(10_000))

    decision = make_gate().check(order(side=Side.BUY, qty=10), ctx)

    assert_rejected(decision, RejectReason.REDUCING_ONLY)
    assert decision.detail == (
        "trading is reducing-only and buy 10 AAPL would not only reduce the 100 AAPL position"
    )


def test_check_when_reducing_state_and_order_flips_through_zero_then_reducing_only() -> None:
    ctx = passing_ctx(state=TradingState.REDUCING, position_qty=D(100), gross_exposure=D(10_000))

    decision = make_gate().check(order(side=Side.SELL, qty=150), ctx)

    assert decision.reason is RejectReason.REDUCING_ONLY


def test_check_when_reducing_state_and_short_is_covered_then_approved() -> None:
    ctx = passing_ctx(state=TradingState.REDUCING, position_qty=D(-100), gross_exposure=D(10_000))

    assert make_gate().check(order(side=Side.BUY, qty=100), ctx).approved


def test_check_when_exit_races_an_open_exit_past_zero_then_reducing_only() -> None:
    # Long 100 with a sell of 80 working: another sell of 50 would leave 30 short.
    ctx = passing_ctx(
        state=TradingState.REDUCING,
        position_qty=D(100),
        open_order_qty=D(-80),
        gross_exposure=D(10_000),
    )

    assert make_gate().check(order(side=Side.SELL, qty=50), ctx).reason is (
        RejectReason.REDUCING_ONLY
    )
    assert make_gate().check(order(side=Side.SELL, qty=20), ctx).approved


def test_check_when_exit_relies_on_an_open_buy_filling_then_reducing_only() -> None:
    # Long 100 with a buy of 200 working: selling 250 flips short if the buy never fills.
    ctx = passing_ctx(
        state=TradingState.REDUCING,
        position_qty=D(100),
        open_order_qty=D(200),
        gross_exposure=D(10_000),
    )

    assert make_gate().check(order(side=Side.SELL, qty=250), ctx).reason is (
        RejectReason.REDUCING_ONLY
    )


# --- fractional quantities ---------------------------------------------------------------------


def test_check_when_fractional_buy_within_limits_then_approved() -> None:
    assert make_gate().check(order(qty="0.5"), passing_ctx()).approved


def test_check_when_fractional_position_goes_past_limit_then_max_position_qty() -> None:
    ctx = passing_ctx(position_qty=D("999.5"), last_price=D(10), gross_exposure=D(9995))

    decision = make_gate().check(order(qty="0.6"), ctx)

    assert_rejected(decision, RejectReason.MAX_POSITION_QTY)
    assert decision.detail == "position would be 1,000.1 AAPL; limit 1,000"


def test_check_when_fractional_exit_while_reducing_then_approved() -> None:
    ctx = passing_ctx(state=TradingState.REDUCING, position_qty=D("0.75"), gross_exposure=D(75))

    assert make_gate().check(order(side=Side.SELL, qty="0.75"), ctx).approved
    assert make_gate().check(order(side=Side.SELL, qty="0.76"), ctx).reason is (
        RejectReason.REDUCING_ONLY
    )


# --- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "side", "qty", "expected"),
    [
        ("0", Side.BUY, "1", False),  # flat: anything opens
        ("0", Side.SELL, "1", False),
        ("100", Side.SELL, "100", True),  # exact close
        ("100", Side.SELL, "40", True),  # partial
        ("100", Side.SELL, "100.0001", False),  # flip
        ("100", Side.BUY, "1", False),  # adds
        ("-100", Side.BUY, "100", True),  # short covered exactly
        ("-100", Side.BUY, "101", False),  # short flipped long
        ("-100", Side.SELL, "1", False),  # short added to
        ("0.75", Side.SELL, "0.25", True),  # fractional
        ("100", Side.SELL, "0", False),  # nothing to reduce with
    ],
)
def test_reduces_position_cases(position: str, side: Side, qty: str, expected: bool) -> None:
    assert reduces_position(D(position), side, D(qty)) is expected


def test_order_only_reduces_when_open_orders_would_cross_zero_then_false() -> None:
    ctx = passing_ctx(position_qty=D(100), open_order_qty=D(-60))

    assert order_only_reduces(order(side=Side.SELL, qty=40), ctx)
    assert not order_only_reduces(order(side=Side.SELL, qty=41), ctx)


@pytest.mark.parametrize(
    ("pnl", "expected"),
    [(None, False), ("0", False), ("-1999.99", False), ("-2000", True), ("-2500", True)],
)
def test_loss_limit_breached_cases(pnl: str | None, expected: bool) -> None:
    value = D(pnl) if pnl is not None else None

    assert loss_limit_breached(value, make_limits()) is expected


def test_loss_halt_latch_when_claimed_then_once_per_trading_day() -> None:
    latch = LossHaltLatch()
    monday, tuesday = date(2026, 3, 9), date(2026, 3, 10)

    assert [latch.claim(monday), latch.claim(monday), latch.claim(tuesday)] == [True, False, True]
    assert latch.day == tuesday


def test_loss_halt_latch_when_a_halt_was_recorded_or_a_later_day_is_known_then_refused() -> None:
    monday, tuesday = date(2026, 3, 9), date(2026, 3, 10)
    recorded = LossHaltLatch()
    recorded.halted_on(monday)
    recorded.halted_on(date(2026, 3, 6))  # an older record does not move the day back

    assert recorded.claim(monday) is False
    assert LossHaltLatch(tuesday).claim(monday) is False  # clock skew across a restart
    assert recorded.claim(tuesday) is True
