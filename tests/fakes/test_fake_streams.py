"""The fake Alpaca server's streams (raw WebSocket clients) and its standalone program."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.models import TradeUpdate
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from engine.domain import Side, Tick
from tests.fakes.alpaca import FakeAlpaca, streams
from tests.fakes.alpaca.standalone import split_and_shift
from tests.fakes.alpaca.streams import SLOW_CLIENT_FRAMES
from tests.fakes.conftest import AUTH, KEY, OPEN_TS, ROOT, SECRET, bar, buy, call
from tests.support.app import wait_for

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


async def test_trade_stream_when_venue_makes_updates_then_encoded_as_sent_once_each(
    fake: FakeAlpaca, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alpaca's stream is not its REST server: a close-all's answer must not wait while the
    # fake encodes the thousands of updates the request made (the flatten benchmark's floor).
    encoded: list[str] = []
    real = streams.trade_update_json

    def counted(update: Any) -> Any:
        encoded.append(update.event)
        return real(update)

    monkeypatch.setattr(streams, "trade_update_json", counted)
    first, second = await listening_trade_stream(fake), await listening_trade_stream(fake)
    await wait_for(lambda: fake.connected_trade_streams() == 2, within=5)

    for i in range(20):  # as a request handler does, without a turn for the loop
        symbol = f"S{i:02d}"
        fake.exchange.on_price(symbol, Decimal(100), OPEN_TS)
        fake.exchange.submit(symbol, Side.BUY, Decimal(2))
    at_return = len(encoded)
    frames = [[json.loads(await ws.recv()) for _ in range(40)] for ws in (first, second)]
    await first.close()
    await second.close()

    assert at_return == 0
    assert frames[0] == frames[1]
    assert [f["data"]["event"] for f in frames[0]] == ["new", "fill"] * 20
    assert [f["data"]["order"]["symbol"] for f in frames[0][::2]] == [
        f"S{i:02d}" for i in range(20)
    ]
    assert len(encoded) == 40  # once per update, not once per listener


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
