"""The fake Alpaca server against the real alpaca-py client and raw HTTP/WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import FailedClosePositionDetails, Order, TradeUpdate
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from engine.clock import TestClock
from engine.domain import Bar, Tick
from tests.fakes.alpaca import FakeAlpaca, build_exchange
from tests.fakes.alpaca.standalone import split_and_shift
from tests.fakes.alpaca.streams import SLOW_CLIENT_FRAMES
from tests.support.app import wait_for

KEY, SECRET = "FAKEKEYID", "FAKESECRET"
AUTH = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
OPEN_TS = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # Friday 10:00 New York
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def bar(symbol: str, close: str, minute: int = 0, day: datetime = OPEN_TS) -> Bar:
    price = Decimal(close)
    ts = day + timedelta(minutes=minute)
    return Bar(symbol, ts, price, price + 1, price - 1, price, Decimal(1000))


async def call(fn: Callable[..., T], *args: Any) -> T:
    """alpaca-py is synchronous: run it off the loop, as the adapter does."""
    return await asyncio.to_thread(fn, *args)


async def raw(
    fake: FakeAlpaca,
    method: str,
    path: str,
    *,
    headers: dict[str, str] = AUTH,
    give_up_s: float = 5.0,
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=give_up_s)) as session,
        session.request(method, fake.base_url + path, headers=headers) as response,
    ):
        text = await response.text()
        return response.status, dict(response.headers), json.loads(text) if text else None


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    server = FakeAlpaca(clock=TestClock(OPEN_TS))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def client(fake: FakeAlpaca) -> TradingClient:
    return TradingClient(KEY, SECRET, url_override=fake.base_url)


async def buy(client: TradingClient, symbol: str, qty: int, cid: str | None = None) -> Order:
    request = MarketOrderRequest(
        symbol=symbol,
        qty=qty,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.DAY,
        client_order_id=cid,
    )
    order = await call(client.submit_order, request)
    assert isinstance(order, Order)
    return order


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


# -- trade-updates stream -------------------------------------------------------------------


async def recv_json(ws: ClientConnection) -> Any:
    frame = await asyncio.wait_for(ws.recv(), timeout=5)
    return json.loads(frame)


async def listening_trade_stream(fake: FakeAlpaca) -> ClientConnection:
    ws = await connect(fake.trade_stream_url)
    auth = {"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}
    await ws.send(json.dumps(auth))
    assert (await recv_json(ws))["data"]["status"] == "authorized"
    await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert await recv_json(ws) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    return ws


async def test_trade_stream_when_order_fills_then_new_and_fill_in_binary_frames(
    fake: FakeAlpaca, client: TradingClient
) -> None:
    ws = await listening_trade_stream(fake)
    fake.push_bar(bar("AAPL", "230.50"))

    order = await buy(client, "AAPL", 3)
    frames = [await asyncio.wait_for(ws.recv(), timeout=5) for _ in range(2)]
    await ws.close()

    assert all(isinstance(frame, bytes) for frame in frames)
    new, fill = (TradeUpdate(**json.loads(frame)["data"]) for frame in frames)
    assert (new.event, fill.event) == ("new", "fill")
    assert fill.order.id == order.id
    assert (fill.price, fill.qty, fill.position_qty) == (230.5, 3, 3)
    activities = await call(client.get, "/account/activities/FILL")
    assert [a["id"] for a in activities] == [str(fill.execution_id)]


async def test_trade_stream_when_dropped_then_client_sees_abnormal_close(
    fake: FakeAlpaca,
) -> None:
    ws = await listening_trade_stream(fake)
    await wait_for(lambda: fake.connected_trade_streams() == 1, within=5)

    await fake.drop_trade_streams()

    assert fake.connected_trade_streams() == 0  # at once, so a test can wait for a reconnect
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout=5)


async def test_trade_stream_when_auth_fails_then_unauthorized_and_closed(
    fake: FakeAlpaca,
) -> None:
    fake.knobs.auth_fail = True
    async with connect(fake.trade_stream_url) as ws:
        await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        reply = await recv_json(ws)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)

    assert reply == {
        "stream": "authorization",
        "data": {"status": "unauthorized", "action": "authenticate"},
    }


# -- market-data stream ---------------------------------------------------------------------


async def authenticated_data_stream(fake: FakeAlpaca) -> ClientConnection:
    ws = await connect(fake.data_stream_url)
    assert await recv_json(ws) == [{"T": "success", "msg": "connected"}]
    await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
    assert await recv_json(ws) == [{"T": "success", "msg": "authenticated"}]
    return ws


async def test_data_stream_when_subscribed_then_only_those_symbols_arrive(
    fake: FakeAlpaca,
) -> None:
    ws = await authenticated_data_stream(fake)
    await ws.send(json.dumps({"action": "subscribe", "bars": ["AAPL"], "trades": ["aapl"]}))
    subscription = (await recv_json(ws))[0]

    fake.push_bar(bar("MSFT", "420"))
    fake.push_bar(bar("AAPL", "230.50"))
    fake.push_trade(Tick("MSFT", OPEN_TS, Decimal("420.1"), Decimal(5)))
    fake.push_trade(Tick("AAPL", OPEN_TS, Decimal("230.6"), Decimal(100)))
    fake.push_bar(bar("AAPL", "231", minute=1))
    frames = [await recv_json(ws) for _ in range(3)]
    await ws.close()

    assert (subscription["T"], subscription["bars"], subscription["trades"]) == (
        "subscription",
        ["AAPL"],
        ["AAPL"],
    )
    assert [(f[0]["T"], f[0]["S"], f[0]["p" if f[0]["T"] == "t" else "c"]) for f in frames] == [
        ("b", "AAPL", 230.5),
        ("t", "AAPL", 230.6),
        ("b", "AAPL", 231),
    ]
    assert frames[0][0]["t"] == "2026-11-20T15:00:00Z"
    assert fake.data_subscriptions("bars") == set()  # the client has gone


async def test_data_stream_when_malformed_frames_asked_then_next_sends_are_broken(
    fake: FakeAlpaca,
) -> None:
    ws = await authenticated_data_stream(fake)
    await ws.send(json.dumps({"action": "subscribe", "bars": ["*"]}))
    await recv_json(ws)
    fake.knobs.malformed_data_frames = 4

    for minute in range(5):
        fake.push_bar(bar("SPY", "590", minute=minute))
    frames = [await asyncio.wait_for(ws.recv(), timeout=5) for _ in range(5)]
    await ws.close()

    with pytest.raises(ValueError, match=r"Expecting|Unterminated|delimiter"):
        json.loads(frames[0])
    not_array, missing, non_numeric, good = (json.loads(f) for f in frames[1:])
    assert isinstance(not_array, dict)
    assert "c" not in missing[0]
    assert non_numeric[0]["o"] == "abc"
    assert good[0]["c"] == 590
    assert fake.knobs.malformed_data_frames == 0


async def test_data_stream_when_protocol_misused_then_documented_error_codes(
    fake: FakeAlpaca,
) -> None:
    fake.knobs.symbol_limit = 1
    async with connect(fake.data_stream_url) as ws:
        await recv_json(ws)
        await ws.send("not json")
        invalid = await recv_json(ws)
        await ws.send(json.dumps({"action": "subscribe", "bars": ["AAPL"]}))
        unauthenticated = await recv_json(ws)
        await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        await recv_json(ws)
        await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        again = await recv_json(ws)
        await ws.send(json.dumps({"action": "subscribe", "bars": ["AAPL"], "trades": ["MSFT"]}))
        too_many = await recv_json(ws)

    codes = [m[0]["code"] for m in (invalid, unauthenticated, again, too_many)]
    assert codes == [400, 401, 403, 405]
    assert fake.data_subscriptions("trades") == set()


async def test_data_stream_when_no_auth_in_time_then_404_and_closed(fake: FakeAlpaca) -> None:
    fake.knobs.auth_timeout_s = 0.05
    async with connect(fake.data_stream_url) as ws:
        await recv_json(ws)
        timeout = await recv_json(ws)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)

    assert timeout == [{"T": "error", "code": 404, "msg": "auth timeout"}]


@pytest.mark.parametrize(
    ("knob", "path", "code", "msg"),
    [
        ("auth_fail", "/v2/iex", 402, "auth failed"),
        ("connection_limit", "/v2/iex", 406, "connection limit exceeded"),
        ("insufficient_subscription", "/v2/sip", 409, "insufficient subscription"),
    ],
)
async def test_data_stream_when_auth_refused_then_error_and_closed(
    fake: FakeAlpaca, knob: str, path: str, code: int, msg: str
) -> None:
    setattr(fake.knobs, knob, True)
    async with connect(fake.data_stream_url.replace("/v2/iex", path)) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        reply = await recv_json(ws)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)

    assert reply == [{"T": "error", "code": code, "msg": msg}]
    assert fake.connected_data_streams() == 0


async def test_data_stream_when_client_falls_behind_then_407_slow_client_and_closed(
    fake: FakeAlpaca,
) -> None:
    ws = await authenticated_data_stream(fake)
    await ws.send(json.dumps({"action": "subscribe", "bars": ["SPY"]}))
    await recv_json(ws)

    for _ in range(SLOW_CLIENT_FRAMES + 1):  # without yielding: nothing can be sent meanwhile
        fake.push_bar(bar("SPY", "590"))
    reply = await recv_json(ws)

    assert reply == [{"T": "error", "code": 407, "msg": "slow client"}]
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout=5)


async def test_data_stream_when_dropped_then_client_closed_and_count_zero(
    fake: FakeAlpaca,
) -> None:
    ws = await authenticated_data_stream(fake)
    assert fake.connected_data_streams() == 1

    await fake.drop_data_streams()

    assert fake.connected_data_streams() == 0
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout=5)


# -- standalone -----------------------------------------------------------------------------


def test_split_and_shift_when_two_days_then_last_day_starts_now_and_first_is_history() -> None:
    day1 = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)
    day2 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    bars = [bar("AAPL", "1", minute=m, day=d) for d in (day1, day2) for m in range(2)]
    now = datetime(2026, 11, 22, 3, 7, 42, tzinfo=UTC)

    history, replay = split_and_shift(bars, now)

    shift = datetime(2026, 11, 22, 3, 7, tzinfo=UTC) - day2
    assert [b.ts for b in replay] == [day2 + shift, day2 + shift + timedelta(minutes=1)]
    assert [b.ts for b in history] == [day1 + shift, day1 + shift + timedelta(minutes=1)]


async def test_cli_when_started_then_prints_urls_serves_replay_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.alpaca",
        "--port",
        "0",
        "--speed",
        "0",
        "--always-open",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("ALPACA_DATA_STREAM_URL="):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
            assert line, f"the fake exited early: {lines}"
            lines.append(line.decode().strip())
        env = dict(line.split("=", 1) for line in lines if "=" in line and " " not in line)
        base = env["ALPACA_TRADING_URL"]
        query = "/v2/stocks/AAPL/bars?timeframe=1Min&start=2000-01-01&end=2100-01-01&limit=10000"

        async def served() -> int:
            async with (
                aiohttp.ClientSession() as session,
                session.get(base + query, headers=AUTH) as response,
            ):
                return len((await response.json())["bars"])

        counts: list[int] = [0]

        async def poll() -> None:
            while counts[-1] < 780:
                counts.append(await served())

        await asyncio.wait_for(poll(), timeout=20)
    finally:
        process.terminate()
        code = await asyncio.wait_for(process.wait(), timeout=10)

    assert env["TRADING_MODE"] == "paper"
    assert (env["APCA_API_KEY_ID"], env["APCA_API_SECRET_KEY"]) == (KEY, SECRET)
    assert env["ALPACA_TRADE_STREAM_URL"] == base.replace("http://", "ws://") + "/stream"
    assert env["ALPACA_DATA_STREAM_URL"] == base.replace("http://", "ws://") + "/v2/iex"
    assert counts[-1] == 780  # 390 history + 390 replayed AAPL minutes of the sample
    assert code == 0
