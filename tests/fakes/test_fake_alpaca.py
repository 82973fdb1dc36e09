"""The fake Alpaca server's REST API against the real alpaca-py client and raw HTTP."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import FailedClosePositionDetails, Order
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
)

from engine.clock import TestClock
from tests.fakes.alpaca import FakeAlpaca, build_exchange
from tests.fakes.conftest import KEY, OPEN_TS, SECRET, bar, buy, call, raw
from tests.support.app import wait_for

# -- REST through alpaca-py ------------------------------------------------------------------


async def test_get_account_when_fresh_then_alpaca_py_parses_cash_and_margin_buying_power(
    client: TradingClient,
) -> None:
    account = await call(client.get_account)

    assert Decimal(account.cash) == Decimal(100_000)
    assert Decimal(account.equity) == Decimal(100_000)
    assert Decimal(account.buying_power) == Decimal(200_000)  # 2 x equity, nothing held


async def test_submit_market_order_when_open_with_a_price_then_fills_and_shows_everywhere(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.push_bar(bar("AAPL", "230.50"))

    order = await buy(client, "AAPL", 3, "cid-1")

    assert (order.status.value, order.filled_qty) == ("filled", "3")
    assert order.filled_avg_price == "230.5"
    positions = await call(client.get_all_positions)
    assert [(p.symbol, p.qty, p.market_value) for p in positions] == [("AAPL", "3", "691.5")]
    assert Decimal((await call(client.get_account)).cash) == Decimal("99308.5")  # 100000 - 691.5
    orders = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert [o.client_order_id for o in orders] == ["cid-1"]
    by_cid = await call(client.get_order_by_client_id, "cid-1")
    assert by_cid.id == order.id
    activities = await call(client.get, "/account/activities/FILL", {"direction": "asc"})
    assert [(a["order_id"], a["type"], a["qty"], a["price"]) for a in activities] == [
        (str(order.id), "fill", "3", "230.5")
    ]
    _, _, listed = await raw(fake, "GET", "/v2/account/activities?activity_types=FILL")
    assert listed == activities


async def test_submit_when_fills_are_capped_then_partial_fill_activities_add_up() -> None:
    clock = TestClock(OPEN_TS)
    exchange = build_exchange(clock=clock, max_fill_qty=Decimal(2))
    async with FakeAlpaca(exchange=exchange) as fake:
        client = TradingClient(KEY, SECRET, url_override=fake.base_url)
        fake.push_bar(bar("AAPL", "100"))
        order = await buy(client, "AAPL", 5)
        fake.push_bar(bar("AAPL", "101", minute=1))
        fake.push_bar(bar("AAPL", "102", minute=2))
        final = await call(client.get_order_by_id, order.id)
        fills = await call(client.get, "/account/activities/FILL", {"direction": "asc"})

    assert (order.status.value, order.filled_qty) == ("partially_filled", "2")
    assert (final.status.value, final.filled_qty) == ("filled", "5")
    assert [(f["type"], f["qty"], f["price"], f["cum_qty"], f["leaves_qty"]) for f in fills] == [
        ("partial_fill", "2", "100", "2", "3"),
        ("partial_fill", "2", "101", "4", "1"),
        ("fill", "1", "102", "5", "0"),
    ]
    assert Decimal(final.filled_avg_price) == Decimal(504) / 5  # (200 + 202 + 102) / 5


async def test_submit_when_client_order_id_reused_then_422_and_no_second_order(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.push_bar(bar("AAPL", "230.50"))
    await buy(client, "AAPL", 1, "dup-1")

    with pytest.raises(APIError) as caught:
        await buy(client, "AAPL", 1, "dup-1")

    assert (caught.value.status_code, caught.value.code) == (422, 40010001)
    assert caught.value.message == "client_order_id must be unique"
    orders = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert len(orders) == 1


async def test_submit_when_unaffordable_then_403_insufficient_buying_power(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.push_bar(bar("AAPL", "1000"))

    with pytest.raises(APIError) as caught:
        await buy(client, "AAPL", 201)  # 201000 > 200000 buying power

    assert (caught.value.status_code, caught.value.code) == (403, 40310000)


async def test_close_all_positions_when_one_symbol_refused_then_207_mixes_200_and_403(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.push_bar(bar("AAPL", "230"))
    fake.push_bar(bar("MSFT", "420"))
    await buy(client, "AAPL", 3)
    await buy(client, "MSFT", 2)
    fake.knobs.refuse_close = {"MSFT"}

    results = await call(client.close_all_positions, True)

    by_symbol = {r.symbol: r for r in results}
    assert (by_symbol["AAPL"].status, by_symbol["MSFT"].status) == (200, 403)
    closing = by_symbol["AAPL"].body
    assert isinstance(closing, Order)
    assert (closing.side, closing.qty) == (OrderSide.SELL, "3")
    refused = by_symbol["MSFT"].body
    assert isinstance(refused, FailedClosePositionDetails)
    assert refused.code == 40310000
    assert "insufficient qty available" in refused.message
    assert [p.symbol for p in await call(client.get_all_positions)] == ["MSFT"]


async def test_close_position_when_refused_or_missing_then_403_or_404(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.push_bar(bar("AAPL", "230"))
    await buy(client, "AAPL", 4)
    fake.knobs.refuse_close = {"AAPL"}

    refused_status, _, refused = await raw(fake, "DELETE", "/v2/positions/AAPL")
    missing_status, _, missing = await raw(fake, "DELETE", "/v2/positions/MSFT")
    fake.knobs.refuse_close = set()
    closed = await call(client.close_position, "AAPL")

    assert (refused_status, refused["code"]) == (403, 40310000)
    assert (missing_status, missing["code"]) == (404, 40410000)
    assert (closed.side, closed.qty, closed.status.value) == (OrderSide.SELL, "4", "filled")


async def test_close_all_positions_when_flat_then_207_with_empty_list(fake: FakeAlpaca) -> None:
    status, _, body = await raw(fake, "DELETE", "/v2/positions?cancel_orders=True")

    assert (status, body) == (207, [])


async def test_cancel_orders_when_two_open_then_207_and_none_left_open(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.push_bar(bar("AAPL", "230"))
    for cid in ("lim-1", "lim-2"):
        request = LimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            limit_price=200,
            client_order_id=cid,
        )
        await call(client.submit_order, request)

    responses = await call(client.cancel_orders)
    status, _, again = await raw(fake, "DELETE", "/v2/orders")

    assert sorted(r.status for r in responses) == [200, 200]
    assert (status, again) == (207, [])
    assert await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []


async def test_cancel_order_when_open_done_or_unknown_then_204_422_404(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    fake.push_bar(bar("AAPL", "230"))
    request = LimitOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=200
    )
    order = await call(client.submit_order, request)

    first = await raw(fake, "DELETE", f"/v2/orders/{order.id}")
    second = await raw(fake, "DELETE", f"/v2/orders/{order.id}")
    unknown = await raw(fake, "DELETE", "/v2/orders/00000000-0000-0000-0000-000000000000")

    assert (first[0], first[2]) == (204, None)
    assert (second[0], second[2]["code"]) == (422, 42210000)
    assert (unknown[0], unknown[2]["code"]) == (404, 40410000)


async def test_clock_and_calendar_when_nyse_then_thanksgiving_closed_and_half_day(
    client: TradingClient,
) -> None:
    clock = await call(client.get_clock)
    days = await call(
        client.get_calendar,
        GetCalendarRequest(start=datetime(2026, 11, 25).date(), end=datetime(2026, 11, 27).date()),
    )

    assert clock.is_open is True
    assert clock.next_close == datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
    assert clock.next_open == datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
    assert [(d.date.day, d.open.hour, d.close.hour) for d in days] == [(25, 9, 16), (27, 9, 13)]


async def test_always_open_when_sunday_then_clock_open_and_orders_fill() -> None:
    sunday = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
    async with FakeAlpaca(clock=TestClock(sunday), always_open=True) as fake:
        client = TradingClient(KEY, SECRET, url_override=fake.base_url)
        fake.push_bar(bar("SPY", "590", day=sunday))

        clock = await call(client.get_clock)
        order = await buy(client, "SPY", 2)
        days = await call(
            client.get_calendar,
            GetCalendarRequest(start=sunday.date(), end=sunday.date()),
        )

    assert clock.is_open is True
    assert (order.status.value, order.filled_avg_price) == ("filled", "590")
    assert [(d.open.hour, d.close.hour, d.close.minute) for d in days] == [(0, 23, 59)]


async def test_stock_bars_when_more_than_a_page_then_token_pages_and_alpaca_py_gets_all() -> None:
    history = [bar("AAPL", str(100 + i), minute=i) for i in range(5)]
    history += [bar("MSFT", "400", minute=i) for i in range(2)]
    async with FakeAlpaca(clock=TestClock(OPEN_TS), history=history) as fake:
        fake.push_bar(bar("AAPL", "200", minute=5))
        query = "/v2/stocks/bars?symbols=AAPL,MSFT&timeframe=1Min&start=2026-11-20&limit=4"
        _, _, first = await raw(fake, "GET", query)
        token = first["next_page_token"]
        _, _, second = await raw(fake, "GET", f"{query}&page_token={token}")
        data = StockHistoricalDataClient(KEY, SECRET, url_override=fake.data_url)
        request = StockBarsRequest(
            symbol_or_symbols=["AAPL", "MSFT"],
            timeframe=TimeFrame.Minute,
            start=OPEN_TS,
            end=OPEN_TS + timedelta(hours=1),
        )
        barset = await call(data.get_stock_bars, request)

    assert [b["c"] for b in first["bars"]["AAPL"]] == [100, 101, 102, 103]
    assert [b["c"] for b in second["bars"]["AAPL"]] == [104, 200]
    assert len(second["bars"]["MSFT"]) == 2
    assert second["next_page_token"] is None
    assert [b.close for b in barset.data["AAPL"]] == [100, 101, 102, 103, 104, 200]
    assert len(barset.data["MSFT"]) == 2


# -- faults ---------------------------------------------------------------------------------


async def test_wrong_keys_then_401_not_authorized(fake: FakeAlpaca) -> None:
    client = TradingClient(KEY, "WRONG", url_override=fake.base_url)

    with pytest.raises(APIError) as caught:
        await call(client.get_account)

    assert (caught.value.status_code, caught.value.code) == (401, 40110000)


async def test_rate_limit_next_when_set_then_429_with_retry_after_then_served(
    fake: FakeAlpaca,
) -> None:
    fake.knobs.rate_limit_next = 1
    fake.knobs.retry_after_s = 7

    limited = await raw(fake, "GET", "/v2/account")
    served = await raw(fake, "GET", "/v2/account")

    assert (limited[0], limited[1]["Retry-After"], limited[2]["code"]) == (429, "7", 42910000)
    assert served[0] == 200
    assert fake.requests == [("GET", "/v2/account"), ("GET", "/v2/account")]


async def test_error_rate_when_half_then_500s_follow_the_seed(fake: FakeAlpaca) -> None:
    fake.knobs.error_rate = 0.5
    fake.knobs.seed = 42
    draws = random.Random(42)
    expected = [500 if draws.random() < 0.5 else 200 for _ in range(20)]

    statuses = [(await raw(fake, "GET", "/v2/clock"))[0] for _ in range(20)]

    assert statuses == expected
    assert 0 < expected.count(500) < 20


async def test_hung_request_when_pending_then_other_requests_still_answered(
    fake: FakeAlpaca,
) -> None:
    fake.knobs.hang_next = 1
    fake.knobs.hang_path_prefix = "/v2/orders"
    hung = asyncio.create_task(raw(fake, "GET", "/v2/orders", give_up_s=0.5))
    await wait_for(lambda: ("GET", "/v2/orders") in fake.requests, within=5)

    status, _, _ = await raw(fake, "GET", "/v2/account")
    with pytest.raises(asyncio.TimeoutError):
        await hung
    after, _, _ = await raw(fake, "GET", "/v2/orders")

    assert (status, after) == (200, 200)


async def test_stop_when_a_request_hangs_then_returns_promptly() -> None:
    fake = FakeAlpaca(clock=TestClock(OPEN_TS))
    await fake.start()
    fake.knobs.hang_next = 1
    hung = asyncio.create_task(raw(fake, "GET", "/v2/account", give_up_s=30))
    await wait_for(lambda: len(fake.requests) == 1, within=5)

    await asyncio.wait_for(fake.stop(), timeout=5)
    outcome = await asyncio.gather(hung, return_exceptions=True)

    assert isinstance(outcome[0], aiohttp.ClientError) or outcome[0][0] == 503


async def test_start_when_host_not_loopback_then_refused() -> None:
    fake = FakeAlpaca(clock=TestClock(OPEN_TS))

    with pytest.raises(ValueError, match="loopback"):
        await fake.start("0.0.0.0")
