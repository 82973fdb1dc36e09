"""The trade-updates stream against the fake: drops, gaps, recovery with no fill lost or
applied twice (adapter level and through the real engine with a real journal)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from engine.broker.alpaca import build_alpaca
from engine.broker.alpaca.trade_stream import YIELD_EVERY, TradeUpdateStream
from engine.broker.port import RejectedUpdate
from engine.bus import EventBus
from engine.clock import SystemClock
from engine.domain import OrderRequest, OrderStatus, Side, Tick
from engine.engine import TradingEngine
from engine.health import BrokerHealth
from engine.store.journal import Journal
from engine.strategy import StrategyHost, load_strategies
from tests.alpaca.conftest import BrokerMaker, Collector, Connections, fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca, build_exchange
from tests.support.app import wait_for


def trade(fake: FakeAlpaca, price: str, symbol: str = "AAPL") -> None:
    fake.push_trade(Tick(symbol, datetime.now(UTC), Decimal(price), Decimal(100)))


def request(cid: str, qty: int) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol="AAPL", side=Side.BUY, qty=Decimal(qty))


async def test_stream_when_dropped_mid_fill_then_gap_and_missed_fills_recoverable(
    make_broker: BrokerMaker,
) -> None:
    exchange = build_exchange(clock=SystemClock(), always_open=True, max_fill_qty=Decimal(4))
    connections = Connections()
    async with FakeAlpaca(exchange=exchange) as fake, make_broker(fake) as (broker, _):
        assert broker.stream is not None
        broker.stream.on_connection = connections
        await broker.connect()
        collected = Collector(broker)
        try:
            await broker.submit_order(request("gap-1", 10))
            trade(fake, "50.00")
            await wait_for(lambda: any(u.event == "partial_fill" for u in collected.updates), 5)
            await fake.drop_trade_streams()
            trade(fake, "50.50")  # both executions happen while we are disconnected
            trade(fake, "51.00")
            await wait_for(lambda: bool(collected.gaps), 5)
            gap = collected.gaps[0]
            recovered = await broker.get_fills_since(gap.down_at - timedelta(minutes=1))
        finally:
            await collected.stop()

    seen = {f.execution_id: f for u in collected.updates if (f := u.to_fill()) is not None}
    venue = {f.execution_id: f for f in recovered}
    assert len(seen) == 1  # only the first execution came over the stream
    assert set(seen) <= set(venue)  # ... and recovery names it the same way: no double
    assert sorted(f.qty for f in venue.values()) == [Decimal(2), Decimal(4), Decimal(4)]
    assert sum(f.qty * f.price for f in venue.values()) == Decimal(
        "504.00"
    )  # 4 x 50 + 4 x 50.50 + 2 x 51
    assert gap.down_at <= gap.up_at
    assert connections.events[0][0] is False
    assert connections.events[-1] == (True, "reconnected; recovering missed fills")
    assert broker.stream.health.reconnects == 1


async def test_stream_when_keys_refused_then_reported_and_gap_once_accepted(
    make_broker: BrokerMaker,
) -> None:
    connections = Connections()
    async with (
        FakeAlpaca(always_open=True) as fake,
        make_broker(fake, request_timeout_s=0.3) as (broker, _),
    ):
        assert broker.stream is not None
        broker.stream.on_connection = connections
        fake.knobs.auth_fail = True
        await broker.connect()
        refused_detail = broker.stream.health.detail
        up_while_refused = broker.stream.connected
        fake.knobs.auth_fail = False
        collected = Collector(broker)
        try:
            await wait_for(lambda: bool(collected.gaps), 5)
        finally:
            await collected.stop()

    assert up_while_refused is False
    assert "refused the API keys" in refused_detail
    assert connections.events[0][0] is False
    assert "refused the API keys" in connections.events[0][1]
    # The first connection failed, so everything since connect() may have been missed.
    assert len(collected.gaps) == 1


async def test_engine_when_stream_dropped_mid_fill_then_every_fill_applied_once(
    tmp_path: Path,
) -> None:
    exchange = build_exchange(clock=SystemClock(), always_open=True, max_fill_qty=Decimal(4))
    async with FakeAlpaca(exchange=exchange) as fake:
        settings = fake_settings(fake, tmp_path)
        broker, feed = build_alpaca(settings, SystemClock())
        fast(broker, feed)
        journal = await Journal.open(settings.storage.db_path, SystemClock(), flush_interval=0.05)
        engine = TradingEngine(
            mode=settings.mode,
            broker=broker,
            feed=feed,
            strategies=StrategyHost(load_strategies(settings.strategy.slots)),
            journal=journal,
            bus=EventBus(),
            clock=SystemClock(),
            risk=settings.risk,
            settings=settings.engine,
            storage=settings.storage,
            allowed_symbols=settings.allowed_symbols,
        )
        await engine.start()
        try:
            await engine.execution.submit(request("engine-gap-1", 10), checked=False)
            trade(fake, "50.00")
            await wait_for(lambda: engine.portfolio.qty("AAPL") == Decimal(4), 5)
            await fake.drop_trade_streams()
            trade(fake, "50.50")
            trade(fake, "51.00")
            await wait_for(lambda: engine.portfolio.qty("AAPL") == Decimal(10), 10)
            await wait_for(lambda: fake.connected_trade_streams() == 1, 5)
            trade(fake, "52.00")  # nothing left to fill: must change nothing
            order = engine.orders.get("engine-gap-1")
            fills = await journal.load_fills()
            applied = engine.execution.fills_applied
            assert broker.stream is not None
            gaps = broker.stream.gaps
        finally:
            await engine.stop()
            feed.close()

    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == Decimal(10)
    assert gaps == 1  # the missed executions came back through gap recovery
    assert applied == 3
    assert len(fills) == 3
    assert len({f.execution_id for f in fills}) == 3
    assert sorted(f.qty for f in fills) == [Decimal(2), Decimal(4), Decimal(4)]
    assert len(exchange.executions_since(datetime(1970, 1, 1, tzinfo=UTC))) == 3


async def test_stream_when_heartbeats_and_unreadable_updates_then_skipped_or_rejected(
    make_broker: BrokerMaker,
) -> None:
    async with FakeAlpaca(always_open=True) as fake, make_broker(fake) as (broker, _):
        await broker.connect()
        assert broker.stream is not None
        collected = Collector(broker)
        try:
            for _ in range(25):
                fake.send_trade_frame("\n")  # Alpaca's one-byte heartbeat
            fake.send_trade_frame("{not json")
            fake.send_trade_frame('{"stream":"trade_updates","data":{"event":"fi')
            negative = {"event": "fill", "qty": "-5", "price": "10", "order": {"id": "x"}}
            fake.send_trade_frame({"stream": "trade_updates", "data": negative})
            await wait_for(lambda: len(collected.items) == 2, 5)
            requests_after = list(fake.requests)
        finally:
            await collected.stop()

    rejected = [i for i in collected.items if isinstance(i, RejectedUpdate)]
    assert len(rejected) == 2
    assert "not a JSON object" in rejected[0].reason
    assert rejected[0].raw == '{"stream":"trade_updates","data":{"event":"fi'
    assert "qty" in rejected[1].reason
    assert rejected[1].raw == {"stream": "trade_updates", "data": negative}
    assert collected.gaps == []  # a heartbeat is no outage: nothing to recover
    assert broker.stream.skipped == 26
    assert broker.stream.health.malformed == 2
    assert requests_after == []


async def test_stream_when_a_burst_of_updates_arrives_then_the_loop_gets_turns_throughout(
    make_broker: BrokerMaker,
) -> None:
    # A close-all of 1,000 positions: 2,000 updates sent at once, already buffered when read.
    clock = SystemClock()
    exchange = build_exchange(clock=clock, always_open=True)
    async with FakeAlpaca(exchange=exchange) as fake, make_broker(fake) as (broker, _):
        await broker.connect()
        collected = Collector(broker)
        seen: list[int] = []  # updates handed on, each time another task got a turn
        done = asyncio.Event()

        async def other_task() -> None:
            while not done.is_set():
                seen.append(len(collected.items))
                await asyncio.sleep(0)

        other = asyncio.create_task(other_task())
        try:
            for i in range(1000):
                exchange.on_price(f"S{i:04d}", Decimal(100), clock.now())
                exchange.submit(f"S{i:04d}", Side.BUY, Decimal(1))
            await wait_for(lambda: len(collected.items) >= 2000, 20)
        finally:
            done.set()
            await other
            await collected.stop()

    stretches = [b - a for a, b in itertools.pairwise(seen)]
    assert len(collected.updates) == 2000
    assert max(stretches) <= 2 * YIELD_EVERY  # without turns: hundreds in one stretch


async def test_liveness_when_cancelled_as_the_pong_arrives_then_the_pinger_stops() -> None:
    # On Python 3.11 asyncio.wait_for swallowed a cancel landing with the pong: the pinger
    # pinged on for ever and a stop waiting for it never finished.
    class PongOnDemand:
        def __init__(self) -> None:
            self.pongs: list[asyncio.Future[float]] = []
            self.pinged = asyncio.Event()

        async def ping(self) -> asyncio.Future[float]:
            pong: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self.pongs.append(pong)
            self.pinged.set()
            return pong

    stream = TradeUpdateStream(
        "ws://127.0.0.1:9/stream",
        "key",
        "secret",
        SystemClock(),
        liveness=BrokerHealth(),
        liveness_s=0.2,
    )
    ws = PongOnDemand()
    pinger = asyncio.create_task(stream._watch_liveness(ws))  # type: ignore[arg-type]
    await asyncio.wait_for(ws.pinged.wait(), 5)  # the pinger now waits for its pong
    ws.pongs[0].set_result(0.001)
    pinger.cancel()  # in the same turn as the pong

    done, _ = await asyncio.wait({pinger}, timeout=1)

    assert pinger in done
    assert pinger.cancelled()
    assert len(ws.pongs) == 1
