"""AlpacaBroker with the real alpaca-py client against the local fake Alpaca."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.broker.outage import OutageMonitor
from engine.broker.resilience import BreakerState
from engine.clock import SystemClock, TestClock
from engine.domain import OrderRequest, OrderStatus, OrderType, Side, Tick
from engine.errors import (
    BrokerUnavailable,
    CircuitOpen,
    DuplicateClientOrderId,
    RateLimited,
)
from tests.alpaca.conftest import BrokerMaker, Collector
from tests.alpaca.test_outage import probe_now
from tests.fakes.alpaca import FakeAlpaca, build_exchange
from tests.support.app import wait_for

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def buy(cid: str, qty: int | str, symbol: str = "AAPL") -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol=symbol, side=Side.BUY, qty=Decimal(qty))


def trade(fake: FakeAlpaca, symbol: str, price: str) -> None:
    fake.push_trade(Tick(symbol, datetime.now(UTC), Decimal(price), Decimal(100)))


def posts(fake: FakeAlpaca) -> int:
    return fake.requests.count(("POST", "/v2/orders"))


async def test_order_lifecycle_when_partial_fills_then_stream_and_activities_agree(
    make_broker: BrokerMaker,
) -> None:
    exchange = build_exchange(clock=SystemClock(), always_open=True, max_fill_qty=Decimal(4))
    async with FakeAlpaca(exchange=exchange) as fake, make_broker(fake) as (broker, _):
        await broker.connect()
        collected = Collector(broker)
        try:
            order = await broker.submit_order(buy("lifecycle-1", 10))
            for price in ("100.00", "100.10", "100.20"):
                trade(fake, "AAPL", price)
            await wait_for(lambda: any(u.event == "fill" for u in collected.updates), 5)
            stream_fills = [f for u in collected.updates if (f := u.to_fill()) is not None]
            rest_fills = await broker.get_fills_since(order.submitted_at - timedelta(seconds=1))
            final = await broker.get_order_by_client_id("lifecycle-1")
            positions = await broker.get_positions()
        finally:
            await collected.stop()

    assert order.status is OrderStatus.SUBMITTED
    assert [u.event for u in collected.updates] == ["new", "partial_fill", "partial_fill", "fill"]
    assert [(f.qty, f.price) for f in stream_fills] == [
        (Decimal(4), Decimal("100.00")),
        (Decimal(4), Decimal("100.10")),
        (Decimal(2), Decimal("100.20")),
    ]
    assert [f.execution_id for f in rest_fills] == [f.execution_id for f in stream_fills]
    assert {f.client_order_id for f in rest_fills} == {"lifecycle-1"}
    assert final is not None
    assert final.status is OrderStatus.FILLED
    assert final.filled_qty == Decimal(10)
    # (4 * 100.00 + 4 * 100.10 + 2 * 100.20) / 10
    assert final.filled_avg_price == Decimal("100.08")
    assert [(p.symbol, p.qty) for p in positions] == [("AAPL", Decimal(10))]


async def test_submit_when_same_client_order_id_after_crash_then_no_second_order(
    make_broker: BrokerMaker,
) -> None:
    async with FakeAlpaca(always_open=True) as fake:
        async with make_broker(fake) as (before_crash, _):
            first = await before_crash.submit_order(buy("restart-1", 5))
        async with make_broker(fake) as (after_restart, _):
            again = await after_restart.submit_order(buy("restart-1", 5))
            with pytest.raises(DuplicateClientOrderId):
                await after_restart.submit_order(buy("restart-1", 7))

    assert again.broker_order_id == first.broker_order_id
    assert len(fake.exchange.orders_since(EPOCH)) == 1
    assert posts(fake) == 3


async def test_submit_when_limit_order_then_decimal_price_round_trips(
    make_broker: BrokerMaker,
) -> None:
    async with FakeAlpaca(always_open=True) as fake, make_broker(fake) as (broker, _):
        request = OrderRequest(
            client_order_id="limit-1",
            symbol="MSFT",
            side=Side.SELL,
            qty=Decimal("2.5"),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("412.37"),
        )
        placed = await broker.submit_order(request)
        cancelled_count = await broker.cancel_all_orders()
        cancelled = await broker.get_order_by_client_id("limit-1")
        unknown = await broker.get_order_by_client_id("never-sent")

    assert placed.limit_price == Decimal("412.37")
    assert placed.qty == Decimal("2.5")
    assert placed.order_type is OrderType.LIMIT
    assert cancelled_count == 1
    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert unknown is None  # Alpaca's 404


async def test_close_all_when_one_symbol_refused_then_per_symbol_results(
    make_broker: BrokerMaker,
) -> None:
    async with FakeAlpaca(always_open=True) as fake, make_broker(fake) as (broker, _):
        trade(fake, "AAPL", "100")
        trade(fake, "MSFT", "200")
        await broker.submit_order(buy("seed-aapl", 3, "AAPL"))
        await broker.submit_order(buy("seed-msft", 2, "MSFT"))
        fake.knobs.refuse_close = {"MSFT"}
        results = await broker.close_all_positions(cancel_orders=True)

    by_symbol = {r.symbol: r for r in results}
    assert by_symbol["AAPL"].ok is True
    assert by_symbol["AAPL"].status == 200
    assert by_symbol["AAPL"].order is not None
    assert by_symbol["AAPL"].order.side is Side.SELL
    assert by_symbol["AAPL"].order.qty == Decimal(3)
    assert by_symbol["MSFT"].ok is False
    assert by_symbol["MSFT"].status == 403
    assert "insufficient qty" in by_symbol["MSFT"].message


async def test_account_clock_calendar_when_fake_then_domain_types(
    make_broker: BrokerMaker,
) -> None:
    async with FakeAlpaca() as fake, make_broker(fake) as (broker, _):
        account = await broker.get_account()
        clock = await broker.get_clock()
        sessions = await broker.get_calendar(
            datetime(2026, 11, 23).date(), datetime(2026, 11, 27).date()
        )

    assert account.cash == Decimal(100_000)
    assert account.equity == Decimal(100_000)
    assert clock.next_open.tzinfo is UTC
    # Thanksgiving (26th) closed, the 27th closes early at 13:00 New York = 18:00 UTC.
    assert [s.day.day for s in sessions] == [23, 24, 25, 27]
    assert sessions[0].open == datetime(2026, 11, 23, 14, 30, tzinfo=UTC)
    assert sessions[-1].close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert sessions[-1].early_close is True


async def test_fills_since_when_more_than_a_page_then_all_pages(make_broker: BrokerMaker) -> None:
    exchange = build_exchange(clock=SystemClock(), always_open=True, max_fill_qty=Decimal(1))
    async with FakeAlpaca(exchange=exchange) as fake, make_broker(fake) as (broker, _):
        order = exchange.submit("AAPL", Side.BUY, Decimal(105), client_order_id="many-fills")
        for _ in range(105):
            exchange.on_price("AAPL", Decimal("10"), datetime.now(UTC))
        fills = await broker.get_fills_since(order.submitted_at - timedelta(seconds=1))
        pages = fake.requests.count(("GET", "/v2/account/activities/FILL"))

    assert len(fills) == 105
    assert len({f.execution_id for f in fills}) == 105
    assert sum(f.qty for f in fills) == Decimal(105)
    assert pages == 2


async def test_fills_since_when_many_unknown_orders_then_one_listing_not_one_fetch_each(
    make_broker: BrokerMaker,
) -> None:
    exchange = build_exchange(clock=SystemClock(), always_open=True)
    async with FakeAlpaca(exchange=exchange) as fake, make_broker(fake) as (broker, _):
        start = datetime.now(UTC) - timedelta(seconds=1)
        for n in range(40):  # placed by someone else (or by us before a restart)
            exchange.on_price(f"S{n:02d}", Decimal("10"), datetime.now(UTC))
            exchange.submit(f"S{n:02d}", Side.BUY, Decimal(1), client_order_id=f"mine-{n:02d}")
        fills = await broker.get_fills_since(start)
        single = [r for r in fake.requests if r[0] == "GET" and r[1].startswith("/v2/orders/")]

    assert sorted(f.client_order_id for f in fills) == [f"mine-{n:02d}" for n in range(40)]
    assert single == [], "each order was fetched on its own"


async def test_orders_since_when_more_than_a_page_then_all_pages(
    make_broker: BrokerMaker,
) -> None:
    exchange = build_exchange(clock=SystemClock(), always_open=True)
    async with FakeAlpaca(exchange=exchange) as fake, make_broker(fake) as (broker, _):
        start = datetime.now(UTC) - timedelta(seconds=1)
        for n in range(520):
            exchange.submit(
                "AAPL", Side.BUY, Decimal(1), "limit", "day", Decimal(1), f"page-{n:03d}"
            )
        orders = await broker.get_orders_since(start)
        pages = fake.requests.count(("GET", "/v2/orders"))

    assert [o.client_order_id for o in orders] == [f"page-{n:03d}" for n in range(520)]
    assert pages == 2


async def test_rest_when_429_then_waits_retry_after_and_retries_once(
    make_broker: BrokerMaker,
) -> None:
    loop = asyncio.get_running_loop()
    async with FakeAlpaca() as fake, make_broker(fake) as (broker, _):
        fake.knobs.rate_limit_next = 1
        fake.knobs.retry_after_s = 1
        started = loop.time()
        account = await broker.get_account()
        elapsed = loop.time() - started
        fake.knobs.rate_limit_next = 1
        with pytest.raises(RateLimited):
            await broker.close_all_positions()

    assert account.cash == Decimal(100_000)
    assert fake.requests.count(("GET", "/v2/account")) == 2
    assert elapsed >= 1.0
    # Closing everything is not idempotent: no retry.
    assert fake.requests.count(("DELETE", "/v2/positions")) == 1
    assert broker.health.consecutive_failures == 0


async def test_rest_when_5xx_then_retried_then_breaker_opens_and_probe_closes(
    make_broker: BrokerMaker,
) -> None:
    clock = TestClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    async with FakeAlpaca() as fake, make_broker(fake, clock=clock) as (broker, _):
        fake.knobs.error_rate = 1.0
        with pytest.raises(BrokerUnavailable, match="500"):
            await broker.get_account()
        tries = len(fake.requests)
        opened = broker.breaker.state
        with pytest.raises(CircuitOpen):
            await broker.get_account()
        fast_failed = len(fake.requests) == tries
        fake.knobs.error_rate = 0.0
        clock.advance(5.0)
        account = await broker.get_account()

    assert tries == 3  # three attempts of an idempotent GET
    assert opened is BreakerState.OPEN
    assert fast_failed
    assert account.cash == Decimal(100_000)
    assert broker.breaker.state is BreakerState.CLOSED
    assert broker.health.ok is True
    assert broker.health.consecutive_failures == 0


async def test_hung_request_when_timeout_then_other_calls_answered_and_loop_free(
    make_broker: BrokerMaker,
) -> None:
    loop = asyncio.get_running_loop()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.01)

    async with (
        FakeAlpaca() as fake,
        make_broker(fake, request_timeout_s=0.5) as (broker, _),
    ):
        fake.knobs.hang_next = 1
        fake.knobs.hang_path_prefix = "/v2/account"
        beat = asyncio.get_running_loop().create_task(ticker())
        hung = asyncio.get_running_loop().create_task(broker.get_account())
        await wait_for(lambda: ("GET", "/v2/account") in fake.requests, 2)
        clock = await broker.get_clock()
        answered_while_hung = not hung.done()
        account = await hung
        beat.cancel()

    assert answered_while_hung
    assert clock.next_open.tzinfo is UTC
    assert account.cash == Decimal(100_000)
    assert broker.timeouts == 1
    assert fake.requests.count(("GET", "/v2/account")) == 2
    # The loop kept ticking through the 0.5 s hang: a blocked loop would leave a 0.5 s hole.
    assert len(ticks) >= 10
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.3


async def test_outage_when_broker_down_past_limit_then_halt_callback_once(
    make_broker: BrokerMaker,
) -> None:
    clock = TestClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    reasons: list[str] = []

    async def halt(reason: str) -> None:
        reasons.append(reason)

    async with FakeAlpaca() as fake, make_broker(fake, clock=clock) as (broker, _):
        monitor = OutageMonitor(
            broker.health, clock, halt_after_s=60, halt=halt, probe=broker.get_clock
        )
        fake.knobs.error_rate = 1.0
        await probe_now(monitor)
        clock.advance(30)
        await monitor.check()
        clock.advance(31)
        await probe_now(monitor)
        halted = await monitor.check()
        clock.advance(30)
        await monitor.check()
        fake.knobs.error_rate = 0.0
        clock.advance(10)
        await probe_now(monitor)
        await monitor.check()

    assert halted is True
    assert len(reasons) == 1
    assert reasons[0] == (
        "broker unreachable for 61 s (limit 60 s); "
        "last error: Alpaca server error 500 (clock): internal server error"
    )
    assert broker.health.ok is True
    assert monitor.fired is False  # re-armed once the probe got through
