"""Alpaca JSON -> domain types, against payloads shaped like Alpaca's documented examples."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from engine.broker.alpaca import convert
from engine.domain import OrderStatus, OrderType, Side, TimeInForce

ORDER: dict[str, Any] = {
    "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
    "client_order_id": "golden-AAPL-1",
    "created_at": "2026-11-20T15:30:00.123456789Z",
    "updated_at": "2026-11-20T15:30:01Z",
    "submitted_at": "2026-11-20T15:30:00.2Z",
    "symbol": "AAPL",
    "qty": "10",
    "filled_qty": "4",
    "filled_avg_price": "189.125",
    "type": "limit",
    "order_type": "limit",
    "side": "buy",
    "time_in_force": "day",
    "limit_price": "190.1",
    "status": "partially_filled",
}


def test_order_when_alpaca_json_then_decimals_and_utc() -> None:
    result = convert.order(ORDER)

    assert result.broker_order_id == ORDER["id"]
    assert result.client_order_id == "golden-AAPL-1"
    assert result.qty == Decimal("10")
    assert result.filled_qty == Decimal("4")
    assert result.filled_avg_price == Decimal("189.125")
    assert result.limit_price == Decimal("190.1")
    assert result.order_type is OrderType.LIMIT
    assert result.side is Side.BUY
    assert result.time_in_force is TimeInForce.DAY
    assert result.status is OrderStatus.PARTIALLY_FILLED
    assert result.broker_status == "partially_filled"
    assert result.submitted_at == datetime(2026, 11, 20, 15, 30, 0, 200000, tzinfo=UTC)
    assert result.updated_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("word", "filled", "expected"),
    [
        ("new", "0", OrderStatus.SUBMITTED),
        ("accepted", "0", OrderStatus.SUBMITTED),
        ("pending_new", "0", OrderStatus.SUBMITTED),
        ("accepted_for_bidding", "0", OrderStatus.SUBMITTED),
        ("held", "0", OrderStatus.SUBMITTED),
        ("partially_filled", "4", OrderStatus.PARTIALLY_FILLED),
        ("filled", "10", OrderStatus.FILLED),
        ("pending_cancel", "0", OrderStatus.CANCEL_PENDING),
        ("canceled", "0", OrderStatus.CANCELLED),
        ("replaced", "0", OrderStatus.CANCELLED),
        ("expired", "0", OrderStatus.EXPIRED),
        ("rejected", "0", OrderStatus.REJECTED),
        ("suspended", "0", OrderStatus.CANCELLED),
        ("done_for_day", "0", OrderStatus.SUBMITTED),
        ("done_for_day", "3", OrderStatus.PARTIALLY_FILLED),
        ("pending_replace", "3", OrderStatus.PARTIALLY_FILLED),
        ("calculated", "10", OrderStatus.FILLED),
        ("calculated", "3", OrderStatus.PARTIALLY_FILLED),
        ("brand_new_word", "0", OrderStatus.SUBMITTED),
    ],
)
def test_order_status_when_alpaca_word_then_our_state(
    word: str, filled: str, expected: OrderStatus
) -> None:
    assert convert.order_status(word, Decimal(10), Decimal(filled)) is expected


def test_trade_update_when_partial_fill_then_execution_key_from_cumulative_qty() -> None:
    data = {
        "event": "partial_fill",
        "execution_id": "f2a0c1b4-0000-4000-8000-000000000001",
        "order": ORDER,
        "timestamp": "2026-11-20T15:30:01.5Z",
        "price": "189.125",
        "qty": "4",
        "position_qty": "4",
    }

    update = convert.trade_update(data)
    fill = update.to_fill()

    assert update.execution_id == f"{ORDER['id']}:4"
    assert fill is not None
    assert fill.qty == Decimal(4)
    assert fill.price == Decimal("189.125")
    assert fill.client_order_id == "golden-AAPL-1"
    assert fill.ts == datetime(2026, 11, 20, 15, 30, 1, 500000, tzinfo=UTC)
    assert update.position_qty == Decimal(4)


def test_fill_activity_when_same_execution_then_same_id_as_the_stream() -> None:
    activity = {
        "id": "20261120103001500::f2a0c1b4-0000-4000-8000-000000000001",
        "activity_type": "FILL",
        "transaction_time": "2026-11-20T15:30:01.5Z",
        "type": "partial_fill",
        "price": "189.125",
        "qty": "4",
        "side": "buy",
        "symbol": "AAPL",
        "leaves_qty": "6",
        "cum_qty": "4.000",
        "order_id": ORDER["id"],
        "order_status": "partially_filled",
    }
    stream = convert.trade_update(
        {"event": "partial_fill", "order": ORDER, "qty": "4", "price": "189.125"}
    )

    fill = convert.fill_activity(activity, "golden-AAPL-1")

    assert fill.execution_id == stream.execution_id
    assert fill.commission == Decimal(0)
    assert fill.side is Side.BUY
    assert fill.notional == Decimal("756.500")


def test_fill_activity_when_short_sale_then_sell_side() -> None:
    activity = {
        "transaction_time": "2026-11-20T15:30:01Z",
        "price": "10",
        "qty": "1",
        "side": "sell_short",
        "symbol": "XYZ",
        "cum_qty": "1",
        "order_id": "o-1",
    }

    assert convert.fill_activity(activity, "c-1").side is Side.SELL


def test_position_when_short_then_negative_qty() -> None:
    raw = {"symbol": "spy", "qty": "5", "side": "short", "avg_entry_price": "450.5"}

    result = convert.position(raw)

    assert result.symbol == "SPY"
    assert result.qty == Decimal(-5)
    assert result.avg_entry_price == Decimal("450.5")
    assert result.current_price is None


def test_account_when_strings_then_decimals() -> None:
    raw = {
        "equity": "100123.45",
        "cash": "50000",
        "buying_power": "200246.9",
        "last_equity": "99000.01",
        "daytrade_count": 2,
        "pattern_day_trader": False,
    }

    result = convert.account(raw)

    assert result.equity == Decimal("100123.45")
    assert result.cash == Decimal(50000)
    assert result.buying_power == Decimal("200246.9")
    assert result.last_equity == Decimal("99000.01")
    assert result.daytrade_count == 2


def test_session_when_early_close_day_then_utc_times_and_flag() -> None:
    # 2026-11-27, the day after Thanksgiving: 09:30-13:00 New York (EST, UTC-5).
    result = convert.session({"date": "2026-11-27", "open": "09:30", "close": "13:00"})

    assert result.day == date(2026, 11, 27)
    assert result.open == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert result.close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert result.early_close is True


def test_session_when_summer_day_then_daylight_saving_offset() -> None:
    result = convert.session({"date": "2026-07-01", "open": "09:30", "close": "16:00"})

    assert result.open == datetime(2026, 7, 1, 13, 30, tzinfo=UTC)
    assert result.early_close is False


def test_market_clock_when_new_york_offsets_then_utc() -> None:
    raw = {
        "timestamp": "2026-11-20T10:15:22-05:00",
        "is_open": True,
        "next_open": "2026-11-23T09:30:00-05:00",
        "next_close": "2026-11-20T16:00:00-05:00",
    }

    result = convert.market_clock(raw)

    assert result.is_open is True
    assert result.ts == datetime(2026, 11, 20, 15, 15, 22, tzinfo=UTC)
    assert result.next_close == datetime(2026, 11, 20, 21, 0, tzinfo=UTC)


def test_close_result_when_207_items_then_order_or_message() -> None:
    ok = convert.close_result({"symbol": "AAPL", "status": 200, "body": ORDER})
    refused = convert.close_result(
        {
            "symbol": "MSFT",
            "status": 403,
            "body": {"code": 40310000, "message": "insufficient qty available for order"},
        }
    )

    assert ok.ok is True
    assert ok.order is not None
    assert ok.order.client_order_id == "golden-AAPL-1"
    assert refused.ok is False
    assert refused.status == 403
    assert refused.order is None
    assert refused.message == "insufficient qty available for order"


def test_order_when_status_missing_then_value_error() -> None:
    broken = {k: v for k, v in ORDER.items() if k != "status"}

    with pytest.raises(ValueError, match="status"):
        convert.order(broken)


def test_order_when_qty_not_numeric_then_value_error() -> None:
    with pytest.raises(ValueError, match="qty"):
        convert.order({**ORDER, "qty": "ten"})


def test_order_when_notional_and_open_then_qty_is_what_executed_and_still_open() -> None:
    notional = {**ORDER, "qty": None, "notional": "100", "filled_qty": "0.25", "type": "market"}

    record = convert.order(notional)

    assert record.notional == Decimal(100)
    assert record.qty == Decimal("0.25")
    assert record.status is OrderStatus.PARTIALLY_FILLED


def test_order_when_notional_and_filled_then_filled_with_its_executed_qty() -> None:
    done = {**ORDER, "qty": None, "notional": "100", "filled_qty": "0.52", "status": "filled"}

    record = convert.order(done)

    assert (record.qty, record.filled_qty, record.status) == (
        Decimal("0.52"),
        Decimal("0.52"),
        OrderStatus.FILLED,
    )


FILL = {"event": "fill", "order": {**ORDER, "filled_qty": "10", "status": "filled"}}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"qty": "-6"}, "qty"),
        ({"price": "-189"}, "price"),
        ({"price": "abc"}, "price"),
        ({"qty": None}, "price or qty"),
        ({"price": None}, "price or qty"),
        ({"event": 7}, "event"),
        ({"event": None}, "event"),
        ({"order": None}, "order"),
        ({"order": "an order"}, "order"),
        ({"order": {**ORDER, "filled_qty": "-1"}}, "filled_qty"),
        ({"order": {**ORDER, "filled_qty": "11"}}, "more than qty"),
        ({"order": {**ORDER, "qty": None}}, "neither qty nor notional"),
        ({"order": {**ORDER, "symbol": ""}}, "symbol"),
        ({"order": {**ORDER, "submitted_at": "yesterday"}}, "submitted_at"),
        ({"timestamp": "now"}, "timestamp"),
        ({"position_qty": "lots"}, "position_qty"),
    ],
)
def test_trade_update_when_shape_wrong_then_value_error_naming_it(
    change: dict[str, Any], named: str
) -> None:
    raw = {**FILL, "qty": "6", "price": "189.5", **change}

    with pytest.raises(ValueError, match=named):
        convert.trade_update(raw)


def test_trade_update_when_short_position_then_negative_position_qty_accepted() -> None:
    sell = {**ORDER, "side": "sell", "filled_qty": "10", "status": "filled"}
    raw = {"event": "fill", "order": sell, "qty": "6", "price": "189.5", "position_qty": "-10"}

    assert convert.trade_update(raw).position_qty == Decimal(-10)
