"""The market-data feed contract shared by the replay feed and the live Alpaca feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from engine.domain import Bar, Tick


class PriceListener(Protocol):
    """Receives market data. Called on the event loop: implementations must not block."""

    def on_bar(self, bar: Bar) -> None: ...

    def on_tick(self, tick: Tick) -> None: ...


class MarketDataSink(PriceListener, Protocol):
    """What a feed delivers to: the engine."""

    async def settle(self) -> None:
        """Wait until everything the data delivered so far set in motion has been handled.

        A replay running as fast as possible awaits this between timestamps, so it never
        outruns the engine (fills land in the minute that caused them); live feeds and
        paced replays never call it.
        """
        ...


@dataclass
class FeedHealth:
    """Live, mutable health of a feed; read by status and heartbeat reports."""

    connected: bool = False
    last_message_at: datetime | None = None
    """Market time (``ts``) of the last bar or tick delivered."""
    last_message_mono: float | None = None
    """``clock.monotonic()`` when the last message was delivered, for staleness checks."""
    messages: int = 0
    malformed: int = 0
    reconnects: int = 0
    finished: bool = False
    detail: str = ""


class MarketDataFeed(Protocol):
    health: FeedHealth

    async def run(self, sink: MarketDataSink) -> None:
        """Deliver market data to ``sink`` until the source is exhausted or the task is
        cancelled."""
        ...

    async def history(self, symbol: str, end: datetime, limit: int) -> list[Bar]:
        """Bars of ``symbol`` strictly before ``end``, oldest first, at most ``limit``."""
        ...

    def close(self) -> None:
        """Release what the feed holds outside the loop (threads); idempotent."""
        ...
