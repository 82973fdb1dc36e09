"""What the fake's own tests share: keys, the opening time, small clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import MarketOrderRequest

from engine.clock import TestClock
from engine.domain import Bar
from tests.fakes.alpaca import FakeAlpaca

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
