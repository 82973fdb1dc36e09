"""Every list the API pages is read to its end (issue 16.2): request count grows with pages,
not with items, at start-up too."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from engine.app import build_app
from engine.bus import EventBus
from engine.clock import SystemClock
from engine.domain import OrderType, Side, TimeInForce
from engine.sim.exchange import SimExchange
from tests.alpaca.conftest import BrokerMaker, fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca, build_exchange


def resting_orders(count: int) -> SimExchange:
    exchange = build_exchange(clock=SystemClock(), always_open=True)
    for n in range(count):
        symbol = f"S{n:03d}"
        exchange.on_price(symbol, Decimal(10), datetime.now(UTC))
        exchange.submit(
            symbol, Side.BUY, Decimal(1), OrderType.LIMIT, TimeInForce.GTC, Decimal(1), f"r-{n:03d}"
        )
    return exchange


async def test_open_orders_when_more_than_a_page_then_every_page(
    make_broker: BrokerMaker,
) -> None:
    async with (
        FakeAlpaca(exchange=resting_orders(1030), always_open=True) as fake,
        make_broker(fake) as (broker, _),
    ):
        orders = await broker.get_open_orders()
        pages = fake.requests.count(("GET", "/v2/orders"))

    assert [o.client_order_id for o in orders] == [f"r-{n:03d}" for n in range(1030)]
    assert pages == 3


async def test_startup_when_more_open_orders_than_a_page_then_adopted_without_lookups(
    tmp_path: Path,
) -> None:
    async with FakeAlpaca(exchange=resting_orders(600), always_open=True) as fake:
        app = await build_app(fake_settings(fake, tmp_path), bus=EventBus())
        fast(app.broker, app.feed)
        await app.start()
        try:
            adopted = len(app.engine.orders.open_orders())
        finally:
            await app.stop()
        lookups = [path for _, path in fake.requests if path.startswith("/v2/orders:")]
        singles = [path for _, path in fake.requests if path.startswith("/v2/orders/")]

    assert adopted == 600
    assert lookups == []
    assert singles == []
