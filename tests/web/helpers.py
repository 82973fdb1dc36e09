"""Small steps the web tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

from engine.app import EngineApp
from engine.domain import OrderRequest, OrderType, Side
from engine.orders import make_client_order_id
from tests.support.app import wait_for


async def rest_limit_buy(app: EngineApp, symbol: str, qty: int, price: str) -> str:
    """A buy limit far under the market: it stays open. Returns its client order id."""
    request = OrderRequest(
        client_order_id=make_client_order_id("test", symbol, app.clock.now(), tag="rest"),
        symbol=symbol,
        side=Side.BUY,
        qty=Decimal(qty),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
        strategy="test",
    )
    result = await app.engine.execution.submit(request, checked=False)
    assert result.order is not None
    await wait_for(
        lambda: any(
            o.client_order_id == request.client_order_id for o in app.engine.orders.open_orders()
        )
    )
    return request.client_order_id


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll an async condition until true; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)
