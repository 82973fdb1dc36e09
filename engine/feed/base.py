"""The market-data feed contract shared by the replay feed and the live Alpaca feed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from engine.domain import Bar, Tick

FEED_SLICE_S = 0.002
"""Longest stretch of a feed's own work (reading its source, handing data to the engine,
which handles a bar inside that call when it can) before the feed lets the loop run."""
RUN_BARS = 64
"""Bars of one timestamp a replay source hands over at most in one piece (a run): the
replay checks its slice of the loop between runs."""


class PriceListener(Protocol):
    """Receives market data. Called on the event loop: implementations must not block."""

    def on_bar(self, bar: Bar) -> None: ...

    def on_tick(self, tick: Tick) -> None: ...


class MarketDataSink(PriceListener, Protocol):
    """What a feed delivers to: the engine."""

    async def settle(self, *, journaled: bool = True) -> None:
        """Wait until everything the data delivered so far set in motion has been handled:
        orders answered, fills in the book and heard by their strategies; with ``journaled``
        also on disk and acknowledged.

        A replay running as fast as possible awaits this between timestamps with
        ``journaled=False``, so it never outruns the engine (fills land in the minute that
        caused them) nor waits for the disk, and once more with ``journaled=True`` after the
        last one, so whoever sees it finished sees its fills journaled. Live feeds and paced
        replays never call it.
        """
        ...

    def receiving(self, more: bool) -> None:
        """A replay hands one timestamp's bars over in parts, letting the loop run between
        them: ``True`` before the first such turn, ``False`` once the last part is in.
        Meanwhile the engine decides on each bar as it comes but holds what depends on the
        whole minute (its orders' broker calls, the equity snapshot), as when the minute came
        in one call. Live feeds never call it."""
        ...


class Turns:
    """A feed's share of the loop: ``over()`` once the feed has run ``slice_s`` (wall time:
    what everything else waiting on the loop feels) since it last let the loop run;
    ``give()`` lets it run and starts a new slice. After any other ``await`` the feed calls
    ``restart()``."""

    def __init__(self, slice_s: float = FEED_SLICE_S) -> None:
        self.slice_s = slice_s
        self.given = 0
        """Turns given so far."""
        self._ends = time.perf_counter() + slice_s

    def restart(self) -> None:
        self._ends = time.perf_counter() + self.slice_s

    def over(self) -> bool:
        return time.perf_counter() >= self._ends

    async def give(self) -> None:
        self.given += 1
        await asyncio.sleep(0)
        self._ends = time.perf_counter() + self.slice_s


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


def bar_runs(bars: Iterable[Bar], symbols: Container[str] | None = None) -> Iterator[list[Bar]]:
    """``bars`` (in time order) of ``symbols`` (None: all) as runs: lists of consecutive bars
    of one timestamp, at most ``RUN_BARS`` long."""
    run: list[Bar] = []
    ts: datetime | None = None
    for bar in bars:
        if symbols is not None and bar.symbol not in symbols:
            continue
        if bar.ts != ts or len(run) >= RUN_BARS:
            if run:
                yield run
            run, ts = [bar], bar.ts
        else:
            run.append(bar)
    if run:
        yield run
