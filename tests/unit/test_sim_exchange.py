from __future__ import annotations

import errno
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.calendar import MarketCalendar
from engine.clock import NEW_YORK, TestClock
from engine.domain import Bar, OrderType, Side, TimeInForce
from engine.errors import BrokerRejected, DuplicateClientOrderId, OrderNotFound
from engine.sim.account import SimAccount
from engine.sim.exchange import SimExchange
from engine.sim.models import CommissionModel, SlippageModel, TradeUpdateRecord

D = Decimal


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)


# Tuesday 2026-03-10 is a regular session (09:30-16:00 New York, EDT).
OPEN_TS = ny(2026, 3, 10, 10, 0)
AFTER_CLOSE = ny(2026, 3, 10, 17, 0)
NEXT_OPEN = ny(2026, 3, 11, 9, 30)

MakeExchange = Callable[..., SimExchange]


@pytest.fixture
def clock() -> TestClock:
    return TestClock(OPEN_TS)


@pytest.fixture
def make(clock: TestClock) -> MakeExchange:
    def build(
        state_path: Path | None = None,
        *,
        cash: str = "100000",
        bps: str = "0",
        per_share: str = "0",
        minimum: str = "0",
        max_fill: str = "0",
    ) -> SimExchange:
        return SimExchange(
            state_path,
            starting_cash=D(cash),
            slippage=SlippageModel(D(bps)),
            commission=CommissionModel(per_share=D(per_share), minimum=D(minimum)),
            max_fill_qty=D(max_fill),
            calendar=MarketCalendar(),
            clock=clock,
        )

    return build


def record_updates(exchange: SimExchange) -> list[TradeUpdateRecord]:
    updates: list[TradeUpdateRecord] = []
    exchange.set_listener(updates.append)
    return updates


# -- pricing models -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "side", "expected"),
    [
        (D("200.00"), Side.BUY, D("200.20")),
        (D("200.00"), Side.SELL, D("199.80")),
        (D("187.33"), Side.BUY, D("187.52")),  # 187.51733 rounds up to the cent
        (D("0.5123"), Side.BUY, D("0.5128")),  # sub-dollar: 0.5128123 to 4 places
    ],
)
def test_slippage_when_market_order_then_pays_up_or_receives_less(
    price: Decimal, side: Side, expected: Decimal
) -> None:
    assert SlippageModel(D(10)).apply(price, side) == expected


def test_slippage_when_limit_would_be_beaten_then_capped_at_limit() -> None:
    model = SlippageModel(D(10))

    assert model.fill_price(D("99.45"), Side.BUY, D("99.50")) == D("99.50")
    assert model.fill_price(D("100.10"), Side.SELL, D("100.00")) == D("100.00")
    assert model.fill_price(D("99.00"), Side.BUY, D("99.50")) == D("99.10")


def test_commission_when_order_split_then_minimum_charged_once() -> None:
    model = CommissionModel(per_share=D("0.005"), minimum=D(1))

    charges = [model.for_execution(D(prior), D(100)) for prior in (0, 100, 200)]

    assert charges == [D("1.00"), D("0.00"), D("0.50")]
    assert sum(charges) == model.order_total(D(300)) == D("1.50")


# -- market orders, cash and positions ----------------------------------------------------


def test_submit_when_market_open_and_price_known_then_fills_with_slippage_and_commission(
    make: MakeExchange,
) -> None:
    exchange = make(bps="10", per_share="0.005", minimum="1")
    exchange.on_price("AAPL", D("200.00"), OPEN_TS)

    order = exchange.submit("AAPL", Side.BUY, D(100))

    assert order.status == "filled"
    assert order.filled_avg_price == D("200.20")
    assert order.commission == D("1.00")
    account = exchange.account()
    assert account.cash == D("79979.00")  # 100000 - 100 * 200.20 - 1.00
    assert account.equity == D("99979.00")  # cash + 100 * 200.00 (last)
    [position] = exchange.positions()
    assert (position.qty, position.avg_entry_price) == (D(100), D("200.20"))


def test_sell_when_long_then_flat_and_cash_includes_both_commissions(make: MakeExchange) -> None:
    exchange = make(bps="10", per_share="0.005", minimum="1")
    exchange.on_price("AAPL", D("200.00"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(100))
    exchange.on_price("AAPL", D("210.00"), OPEN_TS)

    order = exchange.submit("AAPL", Side.SELL, D(100))

    assert order.filled_avg_price == D("209.79")  # 210 * 0.999
    assert exchange.positions() == []
    assert exchange.account().cash == D("100957.00")  # 79979 + 20979 - 1


def test_short_then_cover_when_price_falls_then_profit_in_cash(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("MSFT", D("100"), OPEN_TS)

    exchange.submit("MSFT", Side.SELL, D(50))
    exchange.on_price("MSFT", D("90"), OPEN_TS)
    mid = exchange.account()
    [short] = exchange.positions()
    exchange.submit("MSFT", Side.BUY, D(50))

    assert (short.qty, short.avg_entry_price, short.current_price) == (D(-50), D(100), D(90))
    assert mid.cash == D("105000.00")
    assert mid.equity == D("100500.00")  # 105000 - 50 * 90
    assert exchange.positions() == []
    assert exchange.account().cash == D("100500.00")


def test_sell_when_more_than_long_then_position_flips_at_fill_price(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(10))
    exchange.on_price("AAPL", D("110"), OPEN_TS)

    exchange.submit("AAPL", Side.SELL, D(30))

    [position] = exchange.positions()
    assert (position.qty, position.avg_entry_price) == (D(-20), D(110))
    assert exchange.account().cash == D("102300.00")  # 100000 - 1000 + 3300


def test_buy_when_adding_to_long_then_average_entry_is_weighted(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(30))
    exchange.on_price("AAPL", D("110"), OPEN_TS)

    exchange.submit("AAPL", Side.BUY, D(10))

    [position] = exchange.positions()
    assert position.avg_entry_price == D("102.5")  # (3000 + 1100) / 40


def test_submit_when_fractional_day_market_then_fills_fraction(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("200.00"), OPEN_TS)

    order = exchange.submit("AAPL", Side.BUY, D("0.5"))

    assert order.filled_qty == D("0.5")
    assert exchange.account().cash == D("99900.00")


def test_submit_when_fractional_gtc_then_refused(make: MakeExchange) -> None:
    exchange = make()

    with pytest.raises(BrokerRejected, match="fractional"):
        exchange.submit("AAPL", Side.BUY, D("0.5"), OrderType.MARKET, TimeInForce.GTC)


def test_submit_when_enums_come_as_text_then_read_by_value_and_unknown_ones_refused(
    make: MakeExchange,
) -> None:
    exchange = make()

    order = exchange.submit("AAPL", "buy", D(1), "limit", "gtc", D(10))
    with pytest.raises(BrokerRejected, match="invalid side: 'sideways'"):
        exchange.submit("AAPL", "sideways", D(1))

    assert (order.side, order.type, order.time_in_force) == (
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.GTC,
    )
    assert [o.id for o in exchange.open_orders()] == [order.id]


@pytest.mark.parametrize(
    ("qty", "order_type", "limit", "message"),
    [
        (D(0), OrderType.MARKET, None, "qty"),
        (D(-5), OrderType.MARKET, None, "qty"),
        (D(5), OrderType.LIMIT, None, "limit_price is required"),
        (D(5), OrderType.MARKET, D(10), "only allowed for limit"),
        (D(5), OrderType.LIMIT, D(0), "limit_price must be > 0"),
    ],
)
def test_submit_when_malformed_then_refused_without_order(
    make: MakeExchange, qty: Decimal, order_type: OrderType, limit: Decimal | None, message: str
) -> None:
    exchange = make()

    with pytest.raises(BrokerRejected, match=message):
        exchange.submit("AAPL", Side.BUY, qty, order_type, TimeInForce.DAY, limit)

    assert exchange.orders_since(OPEN_TS) == []


def test_submit_when_price_unknown_then_new_and_fills_on_first_price(make: MakeExchange) -> None:
    exchange = make()

    order = exchange.submit("AAPL", Side.BUY, D(10))
    exchange.on_price("AAPL", D("50"), OPEN_TS)

    assert order.status == "new"
    assert exchange.get_order(order.id).status == "filled"
    assert exchange.get_order(order.id).filled_avg_price == D(50)


# -- limit orders and partial fills -------------------------------------------------------


def test_limit_buy_when_price_crosses_then_fills_at_price_better_than_limit(
    make: MakeExchange,
) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100.00"), OPEN_TS)
    order = exchange.submit(
        "AAPL", Side.BUY, D(10), OrderType.LIMIT, TimeInForce.DAY, D("99.50"), "lim-1"
    )

    exchange.on_price("AAPL", D("99.80"), OPEN_TS)
    resting = exchange.get_order(order.id)
    exchange.on_price("AAPL", D("99.40"), OPEN_TS)

    assert order.status == "new"
    assert resting.status == "new"
    filled = exchange.get_order(order.id)
    assert (filled.status, filled.filled_avg_price) == ("filled", D("99.40"))


def test_limit_sell_when_slippage_would_cross_limit_then_fills_at_limit(
    make: MakeExchange,
) -> None:
    exchange = make(bps="10")
    exchange.on_price("AAPL", D("100.00"), OPEN_TS)
    order = exchange.submit("AAPL", Side.SELL, D(10), OrderType.LIMIT, TimeInForce.DAY, D("100.50"))

    exchange.on_price("AAPL", D("100.55"), OPEN_TS)  # 100.55 * 0.999 = 100.45 < limit

    assert exchange.get_order(order.id).filled_avg_price == D("100.50")


def test_market_order_when_max_fill_qty_then_partial_fills_across_prices(
    make: MakeExchange,
) -> None:
    exchange = make(max_fill="40", per_share="0.005", minimum="1")
    exchange.on_price("AAPL", D("10.00"), OPEN_TS)

    order = exchange.submit("AAPL", Side.BUY, D(100))
    after_submit = exchange.get_order(order.id)
    exchange.on_price("AAPL", D("10.10"), OPEN_TS)
    exchange.on_price("AAPL", D("10.20"), OPEN_TS)

    assert (after_submit.status, after_submit.filled_qty) == ("partially_filled", D(40))
    final = exchange.get_order(order.id)
    assert (final.status, final.filled_qty) == ("filled", D(100))
    assert final.filled_avg_price == D("10.08")  # (400 + 404 + 204) / 100
    executions = exchange.executions_since(OPEN_TS)
    assert [(e.qty, e.price, e.cum_qty, e.leaves_qty) for e in executions] == [
        (D(40), D("10.00"), D(40), D(60)),
        (D(40), D("10.10"), D(80), D(20)),
        (D(20), D("10.20"), D(100), D(0)),
    ]
    assert [e.commission for e in executions] == [D("1.00"), D("0.00"), D("0.00")]
    assert exchange.account().cash == D("98991.00")  # 100000 - 1008 - 1


def test_trade_updates_when_partially_filled_then_new_partial_fill_fill_sequence(
    make: MakeExchange,
) -> None:
    exchange = make(max_fill="100", per_share="0.005", minimum="1")
    updates = record_updates(exchange)
    exchange.on_price("AAPL", D("10"), OPEN_TS)

    order = exchange.submit("AAPL", Side.BUY, D(300), client_order_id="seq-1")
    exchange.on_price("AAPL", D("11"), OPEN_TS)
    exchange.on_price("AAPL", D("12"), OPEN_TS)

    assert [u.event for u in updates] == ["new", "partial_fill", "partial_fill", "fill"]
    fills = updates[1:]
    assert [(u.qty, u.price, u.position_qty) for u in fills] == [
        (D(100), D(10), D(100)),
        (D(100), D(11), D(200)),
        (D(100), D(12), D(300)),
    ]
    assert [u.commission for u in fills] == [D("1.00"), D("0.00"), D("0.50")]
    ids = [u.execution_id for u in fills]
    assert None not in ids
    assert len(set(ids)) == 3
    assert ids == [e.id for e in exchange.executions_since(OPEN_TS)]
    assert all(u.order.id == order.id for u in updates)
    assert [u.order.status for u in updates] == [
        "new",
        "partially_filled",
        "partially_filled",
        "filled",
    ]


# -- market hours -------------------------------------------------------------------------


def test_market_order_when_submitted_after_close_then_accepted_and_fills_at_next_open(
    make: MakeExchange, clock: TestClock
) -> None:
    clock.set(AFTER_CLOSE)
    exchange = make()
    updates = record_updates(exchange)

    order = exchange.submit("AAPL", Side.BUY, D(10))
    exchange.on_price("AAPL", D("100"), ny(2026, 3, 10, 18, 0))  # after hours
    clock.set(ny(2026, 3, 11, 9, 0))
    exchange.on_price("AAPL", D("101"), ny(2026, 3, 11, 9, 0))  # pre-market
    waiting = exchange.get_order(order.id)
    clock.set(NEXT_OPEN)
    exchange.on_price("AAPL", D("102"), NEXT_OPEN)

    assert order.status == "accepted"
    assert order.expires_at == ny(2026, 3, 11, 16, 0)
    assert waiting.status == "accepted"
    filled = exchange.get_order(order.id)
    assert (filled.status, filled.filled_avg_price, filled.filled_at) == (
        "filled",
        D(102),
        NEXT_OPEN,
    )
    assert [u.event for u in updates] == ["new", "fill"]


def test_submit_when_open_but_last_price_from_yesterday_then_waits_for_fresh_price(
    make: MakeExchange, clock: TestClock
) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    clock.set(NEXT_OPEN)

    order = exchange.submit("AAPL", Side.BUY, D(1))

    assert order.status == "new"
    assert order.filled_qty == 0


def test_day_order_when_session_closes_then_expires(make: MakeExchange, clock: TestClock) -> None:
    exchange = make()
    updates = record_updates(exchange)
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    day = exchange.submit("AAPL", Side.BUY, D(5), OrderType.LIMIT, TimeInForce.DAY, D(90))
    gtc = exchange.submit("AAPL", Side.BUY, D(5), OrderType.LIMIT, TimeInForce.GTC, D(90))

    clock.set(ny(2026, 3, 10, 16, 0))
    exchange.on_clock()

    expired = exchange.get_order(day.id)
    assert (expired.status, expired.expired_at) == ("expired", ny(2026, 3, 10, 16, 0))
    assert exchange.get_order(gtc.id).status == "new"
    assert [u.event for u in updates][-1] == "expired"
    assert [o.id for o in exchange.open_orders()] == [gtc.id]


def test_day_order_when_partially_filled_at_close_then_expires_keeping_fills(
    make: MakeExchange, clock: TestClock
) -> None:
    exchange = make(max_fill="3")
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    order = exchange.submit("AAPL", Side.BUY, D(10))

    clock.set(AFTER_CLOSE)
    exchange.on_price("AAPL", D("100"), AFTER_CLOSE)

    final = exchange.get_order(order.id)
    assert (final.status, final.filled_qty) == ("expired", D(3))


def test_ioc_limit_when_not_marketable_then_canceled_at_once(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)

    order = exchange.submit("AAPL", Side.BUY, D(5), OrderType.LIMIT, TimeInForce.IOC, D(90))

    assert order.status == "canceled"


# -- ids, cancels, closes ------------------------------------------------------------------


def test_submit_when_client_order_id_reused_then_refused_and_no_second_order(
    make: MakeExchange,
) -> None:
    exchange = make()
    exchange.submit("AAPL", Side.BUY, D(1), client_order_id="dup-1")

    with pytest.raises(DuplicateClientOrderId):
        exchange.submit("AAPL", Side.BUY, D(1), client_order_id="dup-1")

    assert len(exchange.orders_since(OPEN_TS)) == 1
    found = exchange.order_by_client_id("dup-1")
    assert found is not None
    assert found.qty == D(1)


def test_cancel_when_order_filled_then_refused(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    order = exchange.submit("AAPL", Side.BUY, D(1))

    with pytest.raises(BrokerRejected, match="not cancelable"):
        exchange.cancel(order.id)

    assert exchange.get_order(order.id).status == "filled"


def test_cancel_when_unknown_id_then_order_not_found(make: MakeExchange) -> None:
    with pytest.raises(OrderNotFound):
        make().cancel("no-such-order")


def test_cancel_when_open_then_canceled_and_event_emitted(make: MakeExchange) -> None:
    exchange = make()
    updates = record_updates(exchange)
    order = exchange.submit("AAPL", Side.BUY, D(1), OrderType.LIMIT, TimeInForce.DAY, D(1))

    canceled = exchange.cancel(order.id)

    assert (canceled.status, canceled.canceled_at) == ("canceled", OPEN_TS)
    assert [u.event for u in updates] == ["new", "canceled"]
    assert exchange.open_orders() == []


def test_cancel_all_when_two_open_then_both_canceled(make: MakeExchange) -> None:
    exchange = make()
    for cid in ("a", "b"):
        exchange.submit("AAPL", Side.BUY, D(1), OrderType.LIMIT, TimeInForce.GTC, D(1), cid)

    canceled = exchange.cancel_all()

    assert [o.client_order_id for o in canceled] == ["a", "b"]
    assert exchange.open_orders() == []


def test_close_all_when_long_short_and_open_order_then_flat_with_results_per_symbol(
    make: MakeExchange,
) -> None:
    exchange = make()
    for symbol, price in (("AAPL", "100"), ("MSFT", "200"), ("SPY", "300")):
        exchange.on_price(symbol, D(price), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(10))
    exchange.submit("MSFT", Side.SELL, D(5))
    resting = exchange.submit("SPY", Side.BUY, D(1), OrderType.LIMIT, TimeInForce.GTC, D(250))

    outcomes = exchange.close_all()

    assert [(o.symbol, o.status, o.message) for o in outcomes] == [
        ("AAPL", 200, ""),
        ("MSFT", 200, ""),
    ]
    orders = [o.order for o in outcomes]
    assert [(o.side, o.qty, o.status) for o in orders if o is not None] == [
        (Side.SELL, D(10), "filled"),
        (Side.BUY, D(5), "filled"),
    ]
    assert exchange.positions() == []
    assert exchange.open_orders() == []
    assert exchange.get_order(resting.id).status == "canceled"
    assert exchange.account().cash == D("100000.00")


def test_close_all_when_orders_kept_and_they_hold_shares_then_403_for_that_symbol(
    make: MakeExchange,
) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.on_price("MSFT", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(10))
    exchange.submit("MSFT", Side.BUY, D(10))
    exchange.submit("AAPL", Side.SELL, D(4), OrderType.LIMIT, TimeInForce.GTC, D(150))

    outcomes = exchange.close_all(cancel_orders=False)

    assert [(o.symbol, o.status, o.order is None) for o in outcomes] == [
        ("AAPL", 403, True),
        ("MSFT", 200, False),
    ]
    assert "available: 6" in outcomes[0].message
    assert [p.symbol for p in exchange.positions()] == ["AAPL"]


def test_close_position_when_symbol_has_open_orders_then_cancels_them_and_closes(
    make: MakeExchange,
) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(10))
    resting = exchange.submit("AAPL", Side.SELL, D(10), OrderType.LIMIT, TimeInForce.GTC, D(150))

    order = exchange.close_position("AAPL")

    assert (order.side, order.qty, order.status) == (Side.SELL, D(10), "filled")
    assert exchange.get_order(resting.id).status == "canceled"
    assert exchange.positions() == []


def test_close_position_when_no_position_then_not_found(make: MakeExchange) -> None:
    with pytest.raises(OrderNotFound, match="position not found"):
        make().close_position("AAPL")


# -- buying power and account --------------------------------------------------------------


def test_submit_when_opening_beyond_buying_power_then_rejected(make: MakeExchange) -> None:
    exchange = make(cash="10000")
    updates = record_updates(exchange)
    exchange.on_price("AAPL", D("100"), OPEN_TS)

    too_big = exchange.submit("AAPL", Side.BUY, D(201))  # 20100 > 2 * 10000
    just_fits = exchange.submit("AAPL", Side.BUY, D(200))

    assert (too_big.status, too_big.failed_at) == ("rejected", OPEN_TS)
    assert too_big.filled_qty == 0
    assert just_fits.status == "filled"
    assert [u.event for u in updates] == ["rejected", "new", "fill"]
    assert exchange.account().buying_power == D("0.00")


def test_submit_when_closing_with_no_buying_power_left_then_accepted(make: MakeExchange) -> None:
    exchange = make(cash="10000")
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(200))

    order = exchange.submit("AAPL", Side.SELL, D(200))

    assert order.status == "filled"


def test_account_when_open_limit_order_then_buying_power_reserves_it(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(100))  # 10000 gross

    exchange.submit("AAPL", Side.BUY, D(10), OrderType.LIMIT, TimeInForce.DAY, D(90))

    # 2 * 100000 - 10000 - 10 * 90
    assert exchange.account().buying_power == D("189100.00")


def test_account_when_session_closes_then_last_equity_is_that_close(
    make: MakeExchange, clock: TestClock
) -> None:
    exchange = make()
    fresh = exchange.account()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(10))
    exchange.on_price("AAPL", D("110"), ny(2026, 3, 10, 15, 59))

    clock.set(ny(2026, 3, 11, 10, 0))
    exchange.on_price("AAPL", D("120"), ny(2026, 3, 11, 10, 0))
    account = exchange.account()

    assert fresh.last_equity == D("100000.00")
    assert account.last_equity == D("100100.00")  # 99000 + 10 * 110 at the close
    assert account.equity == D("100200.00")


def test_account_when_round_trip_same_day_then_one_day_trade(make: MakeExchange) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(10))

    exchange.submit("AAPL", Side.SELL, D(10))

    assert exchange.account().daytrade_count == 1


def test_account_when_position_held_overnight_then_no_day_trade(
    make: MakeExchange, clock: TestClock
) -> None:
    exchange = make()
    exchange.on_price("AAPL", D("100"), OPEN_TS)
    exchange.submit("AAPL", Side.BUY, D(10))
    clock.set(ny(2026, 3, 11, 10, 0))
    exchange.on_price("AAPL", D("100"), ny(2026, 3, 11, 10, 0))

    exchange.submit("AAPL", Side.SELL, D(10))

    assert exchange.account().daytrade_count == 0


def test_on_bar_when_bar_arrives_then_close_is_the_price(make: MakeExchange) -> None:
    exchange = make()
    order = exchange.submit("AAPL", Side.BUY, D(1))

    exchange.on_bar(Bar("AAPL", OPEN_TS, D(1), D(3), D("0.5"), D(2), D(100)))

    assert exchange.get_order(order.id).filled_avg_price == D(2)


def test_listener_when_it_raises_then_state_and_later_updates_survive(
    make: MakeExchange,
) -> None:
    exchange = make()
    seen: list[str] = []

    def flaky(update: TradeUpdateRecord) -> None:
        seen.append(update.event)
        if update.event == "new":
            raise RuntimeError("consumer bug")

    exchange.set_listener(flaky)
    exchange.on_price("AAPL", D("100"), OPEN_TS)

    order = exchange.submit("AAPL", Side.BUY, D(1))

    assert order.status == "filled"
    assert seen == ["new", "fill"]


# -- persistence ----------------------------------------------------------------------------


def test_restart_when_state_file_exists_then_account_orders_and_ids_survive(
    make: MakeExchange, tmp_path: Path
) -> None:
    path = tmp_path / "sim" / "state.json"
    first = make(path, per_share="0.01", minimum="1")
    first.on_price("AAPL", D("100"), OPEN_TS)
    first.submit("AAPL", Side.BUY, D(10), client_order_id="buy-1")
    first.submit("MSFT", Side.SELL, D("2"), OrderType.MARKET, TimeInForce.DAY, None, "short-1")
    first.on_price("MSFT", D("50.5"), OPEN_TS)
    resting = first.submit(
        "AAPL", Side.BUY, D(5), OrderType.LIMIT, TimeInForce.GTC, D("90.25"), "rest-1"
    )

    second = make(path, cash="1")  # starting cash is ignored once a state exists

    assert second.account() == first.account()
    assert second.account().cash == D("99099.00")  # 100000 - 1000 - 1 + 2 * 50.5 - 1
    assert second.positions() == first.positions()
    assert second.open_orders() == [resting]
    assert second.orders_since(OPEN_TS) == first.orders_since(OPEN_TS)
    assert second.executions_since(OPEN_TS) == first.executions_since(OPEN_TS)
    with pytest.raises(DuplicateClientOrderId):
        second.submit("AAPL", Side.BUY, D(1), client_order_id="buy-1")
    assert all(json.loads(line)["v"] == 3 for line in path.read_text().splitlines())
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_restart_when_resting_order_then_it_still_fills(make: MakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = make(path)
    order = first.submit("AAPL", Side.BUY, D(5), OrderType.LIMIT, TimeInForce.GTC, D(90))

    second = make(path)
    second.on_price("AAPL", D("89"), OPEN_TS)

    assert second.get_order(order.id).status == "filled"
    assert second.positions()[0].qty == D(5)


def test_constructor_when_state_file_corrupt_then_clear_error(
    make: MakeExchange, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")

    with pytest.raises(ValueError, match="unreadable"):
        make(path)


def test_restart_when_last_line_torn_by_a_crash_then_state_of_previous_commit(
    make: MakeExchange, tmp_path: Path
) -> None:
    path = tmp_path / "state.jsonl"
    first = make(path)
    first.on_price("AAPL", D("100"), OPEN_TS)
    first.submit("AAPL", Side.BUY, D(10), client_order_id="buy-1")
    committed = first.account()
    with path.open("ab") as f:
        f.write(b'{"v":2,"account":{"cash":"1"')  # killed half-way through an append

    second = make(path)

    assert second.account() == committed
    assert second.order_by_client_id("buy-1") is not None


def test_commits_when_many_then_file_compacts_and_state_survives(
    make: MakeExchange, tmp_path: Path
) -> None:
    path = tmp_path / "state.jsonl"
    first = make(path)
    first._ledger._store._compact_every = 5  # type: ignore[union-attr]
    first.on_price("AAPL", D("100"), OPEN_TS)
    for i in range(12):
        first.submit("AAPL", Side.BUY, D(1), client_order_id=f"buy-{i}")

    second = make(path)

    assert len(path.read_text().splitlines()) < 12
    assert second.account() == first.account()
    assert len(second.orders_since(OPEN_TS)) == 12
    assert len(second.executions_since(OPEN_TS)) == 12


def test_restart_when_time_moved_with_a_fill_then_last_ts_restored(
    make: MakeExchange, clock: TestClock, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    first = make(path)
    later = ny(2026, 3, 10, 11, 0)
    first.on_price("AAPL", D("100"), later)
    first.submit("AAPL", Side.BUY, D(1))

    second = make(path)

    assert first.last_ts == later
    assert second.last_ts == later


def test_restart_when_only_prices_moved_then_resumes_after_the_last_full_minute(
    make: MakeExchange, tmp_path: Path
) -> None:
    # Before: prices were saved only with the next fill, so a restart went back to the last
    # fill's time and a replay played up to 72 minutes a second time.
    path = tmp_path / "state.jsonl"
    first = make(path)
    t1, t2 = ny(2026, 3, 10, 11, 1), ny(2026, 3, 10, 11, 2)
    first.on_price("AAPL", D("100"), t1)
    for second in range(0, 60, 10):  # ticks inside a minute are not saved one by one
        first.on_price("MSFT", D("200"), t1 + timedelta(seconds=second))
    first.on_price("AAPL", D("101"), t2)  # killed here: 11:02 is not seen in full

    crashed = make(path)

    assert len(path.read_text().splitlines()) == 2  # created, then 11:01 once
    assert crashed.last_ts == t1 + timedelta(seconds=50)
    assert (crashed.last_price("AAPL"), crashed.last_price("MSFT")) == (D("100"), D("200"))

    crashed.on_price("AAPL", D("101"), t2)
    crashed.flush()  # a clean stop saves the minute it was in
    restarted = make(path)

    assert restarted.last_ts == t2
    assert restarted.last_price("AAPL") == D("101")


def test_restart_when_torn_line_then_next_commit_starts_a_clean_line_and_survives(
    make: MakeExchange, tmp_path: Path
) -> None:
    # Before: the torn bytes stayed, the next append was glued onto them and the commit made
    # after the restart was lost (the glued line was dropped as torn in its turn).
    path = tmp_path / "state.jsonl"
    first = make(path)
    first.on_price("AAPL", D("100"), OPEN_TS)
    first.submit("AAPL", Side.BUY, D(10), client_order_id="buy-1")
    with path.open("ab") as f:
        f.write(b'{"v":3,"full":false,"account":{"cash":"1"')  # killed mid-append

    second = make(path)
    second.submit("AAPL", Side.BUY, D(5), client_order_id="buy-2")
    third = make(path)

    assert third.order_by_client_id("buy-2") is not None
    assert third.positions()[0].qty == D(15)
    assert third.account() == second.account()
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_commit_when_write_fails_part_way_then_torn_bytes_cut_and_next_commit_survives(
    make: MakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the bytes a failed append (a full disk) had written stayed in the file, the
    # next commit was glued onto them, and the restart refused the damaged line.
    path = tmp_path / "state.jsonl"
    first = make(path)
    first.on_price("AAPL", D("100"), OPEN_TS)
    first.submit("AAPL", Side.BUY, D(10), client_order_id="buy-1")
    first.flush()  # the next commit opens the file again
    real_open = Path.open

    class DiskFull:
        def __init__(self, real: Any) -> None:
            self.real = real

        def write(self, data: bytes) -> int:
            self.real.write(data[: len(data) // 2])
            self.real.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def __enter__(self) -> DiskFull:
            return self

        def __exit__(self, *exc: object) -> None:
            self.real.close()

    def full_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, mode, *args, **kwargs)
        return DiskFull(handle) if self == path and mode == "ab" else handle

    monkeypatch.setattr(Path, "open", full_open)
    with pytest.raises(OSError, match="No space"):
        first.submit("AAPL", Side.BUY, D(2), client_order_id="buy-2")
    monkeypatch.setattr(Path, "open", real_open)  # space again
    first.submit("AAPL", Side.BUY, D(5), client_order_id="buy-3")

    second = make(path)

    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert second.order_by_client_id("buy-3") is not None
    assert second.account() == first.account()


def test_commit_when_many_symbols_quoted_then_line_holds_only_what_changed(
    make: MakeExchange, clock: TestClock, tmp_path: Path
) -> None:
    # Before: every commit wrote every symbol's last quote, position and opening day.
    path = tmp_path / "state.jsonl"
    first = make(path)
    symbols = [f"S{i:03d}" for i in range(200)]
    for symbol in symbols:
        first.on_price(symbol, D("50"), OPEN_TS)
        first.submit(symbol, Side.BUY, D(1))
    later = OPEN_TS + timedelta(minutes=1)
    first.on_price("S007", D("51"), later)
    first.submit("S007", Side.SELL, D(1))  # closes S007
    first.submit("S008", Side.BUY, D(2))

    last = json.loads(path.read_text().splitlines()[-1])["account"]
    restarted = make(path)

    assert (last["quotes_at"], len(last["positions"]), last["closed"]) == ({}, 1, [])
    assert restarted.account() == first.account()
    assert restarted.positions() == first.positions()
    assert len(restarted.positions()) == 199
    assert [restarted.last_price(s) for s in symbols] == [first.last_price(s) for s in symbols]
    assert restarted.orders_since(OPEN_TS) == first.orders_since(OPEN_TS)
    assert restarted.executions_since(OPEN_TS) == first.executions_since(OPEN_TS)


def test_restart_when_round_trip_then_closed_position_and_day_trade_restored(
    make: MakeExchange, tmp_path: Path
) -> None:
    path = tmp_path / "state.jsonl"
    first = make(path)
    first.on_price("AAPL", D("100"), OPEN_TS)
    first.submit("AAPL", Side.BUY, D(3))
    first.submit("AAPL", Side.SELL, D(3))
    first.submit("MSFT", Side.BUY, D(1))  # MSFT has no price: the order rests

    restarted = make(path)

    assert restarted.positions() == []
    assert restarted.account() == first.account()
    assert restarted.account().daytrade_count == 1
    assert len(restarted.open_orders()) == 1


def test_restart_when_resting_day_order_then_it_expires_at_the_close(
    make: MakeExchange, clock: TestClock, tmp_path: Path
) -> None:
    path = tmp_path / "state.jsonl"
    first = make(path)
    order = first.submit("AAPL", Side.BUY, D(5), OrderType.LIMIT, TimeInForce.DAY, D(90))

    restarted = make(path)
    restarted.on_price("AAPL", D("95"), OPEN_TS + timedelta(minutes=1))
    assert restarted.get_order(order.id).status == "new"
    clock.set(AFTER_CLOSE)
    restarted.on_clock()

    assert restarted.get_order(order.id).status == "expired"


def test_load_when_file_from_version_2_then_state_restored(
    make: MakeExchange, tmp_path: Path
) -> None:
    # Version 2 wrote the whole account on every line, day trades as a list of days.
    path = tmp_path / "state.jsonl"
    account = {
        "starting_cash": "1000",
        "cash": "900",
        "last_equity": "1000",
        "equity_close": ny(2026, 3, 9, 16, 0).isoformat(),
        "positions": [{"symbol": "AAPL", "qty": "1", "avg_entry_price": "100"}],
        "quotes": {"AAPL": {"price": "101", "ts": OPEN_TS.isoformat()}},
        "daytrades": ["2026-03-09", "2026-03-09"],
        "opened": {"AAPL": "2026-03-10"},
        "last_ts": OPEN_TS.isoformat(),
    }
    line = {"v": 2, "account": account, "orders": [], "executions": []}
    path.write_text(json.dumps(line) + "\n")

    restored = make(path)

    assert restored.account().cash == D("900")
    assert restored.account().equity == D("1001")
    assert restored.account().daytrade_count == 2
    assert restored.last_price("AAPL") == D("101")
    restored.submit("AAPL", Side.SELL, D(1))
    assert make(path).positions() == []


def test_account_totals_when_prices_and_fills_move_then_running_sums_match_a_walk(
    make: MakeExchange, clock: TestClock, tmp_path: Path
) -> None:
    # Equity and gross exposure are running totals (asked on every order); a walk over every
    # position, as they were computed before, must agree after every step and a restart.
    rng = random.Random(14)
    path = tmp_path / "state.jsonl"
    exchange = make(path, cash="1000000")
    account = exchange._account
    symbols = ["AAPL", "MSFT", "NVDA", "TSLA"]

    def walked() -> tuple[Decimal, Decimal]:
        values = [p.qty * account.mark(s) for s, p in account.positions.items()]
        return account.cash + sum(values, D(0)), sum((abs(v) for v in values), D(0))

    for step in range(400):
        ts = OPEN_TS + timedelta(seconds=step)
        clock.set(ts)
        symbol = rng.choice(symbols)
        if rng.random() < 0.6:
            exchange.on_price(symbol, D(rng.randint(5000, 30000)) / 100, ts)
        else:
            side = rng.choice([Side.BUY, Side.SELL])
            exchange.submit(symbol, side, D(rng.randint(1, 40)))
        equity, gross = walked()
        assert account.equity() == equity
        assert account._exposure.gross == gross

    exchange.flush()  # the last minute's prices too
    restarted = make(path, cash="1000000")._account
    assert restarted.equity() == account.equity()
    assert restarted._exposure.gross == account._exposure.gross


def test_account_delta_when_quotes_of_two_times_interleave_then_grouped_by_time() -> None:
    account = SimAccount(D(1000), MarketCalendar(), OPEN_TS)
    later = OPEN_TS + timedelta(minutes=1)
    account.set_quote("A", D("1.5"), OPEN_TS)
    account.set_quote("B", D("2.5"), later)
    account.set_quote("C", D("3.5"), OPEN_TS + timedelta(0))  # an equal time, another object

    quotes_at = account.delta_json()["quotes_at"]

    assert quotes_at == {
        OPEN_TS.isoformat(): {"A": "1.5", "C": "3.5"},
        later.isoformat(): {"B": "2.5"},
    }
