"""The market-data client and warm-up history against the fake."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.backoff import Backoff
from engine.clock import SystemClock
from engine.domain import Bar, Tick
from engine.feed.alpaca_data import AlpacaDataFeed, MarketDataFatal
from tests.alpaca.conftest import SYMBOLS, BrokerMaker, Connections, Sink
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import wait_for

START = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def bar(n: int, symbol: str = "AAPL", close: str = "100.25") -> Bar:
    price = Decimal(close)
    return Bar(
        symbol=symbol,
        ts=START + timedelta(minutes=n),
        open=price - Decimal("0.10"),
        high=price + Decimal("0.50"),
        low=price - Decimal("0.50"),
        close=price,
        volume=Decimal(1200 + n),
    )


def feed_for(fake: FakeAlpaca, connections: Connections | None = None) -> AlpacaDataFeed:
    return AlpacaDataFeed(
        fake.data_stream_url,
        fake.key_id,
        fake.secret_key,
        SYMBOLS,
        SystemClock(),
        on_connection=connections,
        backoff=Backoff(base_s=0.05, cap_s=0.2),
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_feed_when_bars_and_trades_then_decimal_domain_types() -> None:
    sink = Sink()
    async with FakeAlpaca() as fake:
        feed = feed_for(fake)
        task = asyncio.get_running_loop().create_task(feed.run(sink))
        try:
            await wait_for(lambda: fake.data_subscriptions("bars") == set(SYMBOLS), 5)
            fake.push_bar(bar(0))
            fake.push_trade(Tick("MSFT", START, Decimal("412.37"), Decimal(50)))
            fake.push_bar(bar(1, symbol="TSLA"))  # not subscribed: not sent
            await wait_for(lambda: len(sink.bars) == 1 and len(sink.ticks) == 1, 5)
        finally:
            await _cancel(task)

    assert sink.bars == [bar(0)]
    assert sink.ticks == [Tick("MSFT", START, Decimal("412.37"), Decimal(50))]
    assert fake.data_subscriptions("trades") == set()  # unsubscribed by disconnecting
    assert feed.health.messages == 2
    assert feed.health.last_message_at == START
    assert feed.health.malformed == 0


async def test_feed_when_disconnected_then_reconnects_and_resubscribes() -> None:
    sink = Sink()
    connections = Connections()
    async with FakeAlpaca() as fake:
        feed = feed_for(fake, connections)
        task = asyncio.get_running_loop().create_task(feed.run(sink))
        try:
            await wait_for(lambda: fake.data_subscriptions("bars") == set(SYMBOLS), 5)
            fake.push_bar(bar(0))
            await wait_for(lambda: len(sink.bars) == 1, 5)
            await fake.drop_data_streams()
            await wait_for(lambda: feed.health.reconnects == 1 and feed.health.connected, 5)
            await wait_for(lambda: fake.data_subscriptions("bars") == set(SYMBOLS), 5)
            fake.push_bar(bar(1))
            await wait_for(lambda: len(sink.bars) == 2, 5)
        finally:
            await _cancel(task)

    assert [b.ts for b in sink.bars] == [START, START + timedelta(minutes=1)]
    assert fake.data_subscriptions("trades") == set()
    assert [up for up, _ in connections.events] == [False, True]
    assert connections.events[1][1] == "reconnected and resubscribed"


async def test_feed_when_malformed_frames_then_skipped_and_counted() -> None:
    sink = Sink()
    async with FakeAlpaca() as fake:
        feed = feed_for(fake)
        task = asyncio.get_running_loop().create_task(feed.run(sink))
        try:
            await wait_for(lambda: fake.data_subscriptions("bars") == set(SYMBOLS), 5)
            # Invalid JSON, a bare object, a bar missing fields, a bar with non-numbers.
            fake.knobs.malformed_data_frames = 4
            for n in range(6):
                fake.push_bar(bar(n))
            await wait_for(lambda: len(sink.bars) == 2 and feed.health.malformed == 4, 5)
        finally:
            await _cancel(task)

    assert [b.ts for b in sink.bars] == [START + timedelta(minutes=n) for n in (4, 5)]
    assert feed.health.messages == 2
    assert feed.health.connected is False  # cancelled
    assert feed.health.reconnects == 0  # bad frames do not cost the connection


async def test_feed_when_auth_failed_then_fatal_without_retrying() -> None:
    connections = Connections()
    async with FakeAlpaca() as fake:
        fake.knobs.auth_fail = True
        feed = feed_for(fake, connections)
        with pytest.raises(MarketDataFatal, match="402"):
            await asyncio.wait_for(feed.run(Sink()), 5)

    assert connections.events == [(False, feed.health.detail)]
    assert "APCA_API_KEY_ID" in feed.health.detail


async def test_feed_when_connection_limit_then_explained_and_retried_slowly() -> None:
    connections = Connections()
    waits: list[float] = []
    never = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await never.wait()

    async with FakeAlpaca() as fake:
        fake.knobs.connection_limit = True
        feed = AlpacaDataFeed(
            fake.data_stream_url,
            fake.key_id,
            fake.secret_key,
            SYMBOLS,
            SystemClock(),
            on_connection=connections,
            sleep=sleep,
        )
        task = asyncio.get_running_loop().create_task(feed.run(Sink()))
        try:
            await wait_for(lambda: bool(waits), 5)
        finally:
            await _cancel(task)

    assert 54.0 <= waits[0] <= 60.0  # 60 s with at most 10 % jitter, not a hot loop
    assert len(connections.events) == 1
    up, detail = connections.events[0]
    assert up is False
    assert "only one" in detail
    assert "406" in detail
    assert "Close the other bot" in feed.health.detail


async def test_history_when_bars_stored_then_complete_bars_before_end_oldest_first(
    make_broker: BrokerMaker,
) -> None:
    stored = [bar(n, close=f"{100 + n}.25") for n in range(30)]
    async with FakeAlpaca(history=stored) as fake, make_broker(fake) as (_, feed):
        end = stored[-1].ts + timedelta(seconds=30)  # the last bar is still forming
        got = await feed.history("AAPL", end, 10)
        none = await feed.history("MSFT", end, 10)

    assert got == stored[19:29]
    assert got[-1].close == Decimal("128.25")
    assert none == []


async def test_feed_when_a_frame_holds_a_burst_then_the_loop_runs_between_its_messages() -> None:
    burst = [bar(n, symbol=s) for n in range(50) for s in SYMBOLS]
    ticks = 0
    ticks_at: list[int] = []

    class Counting(Sink):
        def on_bar(self, b: Bar) -> None:
            super().on_bar(b)
            ticks_at.append(ticks)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    sink = Counting()
    async with FakeAlpaca() as fake:
        feed = feed_for(fake)
        feed.slice_s = 0.0  # a turn after every message
        task = asyncio.get_running_loop().create_task(feed.run(sink))
        other = asyncio.get_running_loop().create_task(ticker())
        try:
            await wait_for(lambda: fake.data_subscriptions("bars") == set(SYMBOLS), 5)
            fake.push_bars(burst)  # one frame
            await wait_for(lambda: len(sink.bars) == len(burst), 5)
        finally:
            await _cancel(other)
            await _cancel(task)

    assert sink.bars == burst
    assert all(later > earlier for earlier, later in itertools.pairwise(ticks_at))
    assert feed.health.messages == len(burst)
