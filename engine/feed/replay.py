"""Replay recorded minute bars as if they arrived live, driving a ``ReplayClock``.

Bars before ``replay_from`` are history (served by ``history()``, as a live feed would serve
its REST backfill); bars from ``replay_from`` on are delivered by ``run()`` one timestamp
group at a time, with the clock set to each bar's close before the sink sees it.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Protocol

from engine.clock import trading_day
from engine.domain import Bar, ensure_utc
from engine.feed.base import FeedHealth, MarketDataSink

BAR_LENGTH = timedelta(minutes=1)
SAMPLE_BARS_PATH = Path(__file__).resolve().parent / "data" / "sample_bars.csv"

Sleep = Callable[[float], Awaitable[object]]


class SettableClock(Protocol):
    """What the replay needs from its clock: ``ReplayClock`` (or ``TestClock``) fits."""

    def set(self, ts: datetime) -> None: ...

    def monotonic(self) -> float: ...


class ReplayFeed:
    """A ``MarketDataFeed`` over a fixed set of bars.

    ``speed``: 0 = as fast as possible, 1 = real time, N = N times faster. Waits between bar
    groups longer than ``max_gap`` of market time (overnight, halts) are shortened to it, so a
    multi-day replay does not sit idle through the night. ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        bars: Sequence[Bar],
        *,
        clock: SettableClock | None = None,
        speed: float = 0.0,
        replay_from: datetime | None = None,
        symbols: Collection[str] | None = None,
        max_gap: timedelta = timedelta(minutes=5),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be 0 (as fast as possible) or positive")
        wanted = {s.upper() for s in symbols} if symbols is not None else None
        ordered = sorted(
            (b for b in bars if wanted is None or b.symbol in wanted),
            key=lambda b: (b.ts, b.symbol),
        )
        self.health = FeedHealth()
        self._clock = clock
        self._speed = speed
        self._max_gap_s = max_gap.total_seconds()
        self._sleep = sleep
        self._replay_from = (
            ensure_utc(replay_from, field="replay_from")
            if replay_from is not None
            else _last_session_start(ordered)
        )
        split = bisect_left([b.ts for b in ordered], self._replay_from) if ordered else 0
        self._history_count = split
        self._groups: list[list[Bar]] = [
            list(group) for _, group in groupby(ordered[split:], key=lambda b: b.ts)
        ]
        self._next_group = 0
        self._running = False
        # Per-symbol ts index for history(): a live feed never serves bars from the future,
        # so history only reaches as far as what has been delivered.
        self._by_symbol: dict[str, list[Bar]] = {}
        for bar in ordered:
            self._by_symbol.setdefault(bar.symbol, []).append(bar)
        self._ts_by_symbol = {s: [b.ts for b in lst] for s, lst in self._by_symbol.items()}
        self._known_until: datetime | None = None
        start = self._replay_from.isoformat()
        self.health.detail = f"{self.replay_bars} bars to replay from {start}"

    @property
    def replay_from(self) -> datetime:
        return self._replay_from

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_symbol))

    @property
    def history_bars(self) -> int:
        return self._history_count

    @property
    def replay_bars(self) -> int:
        return sum(len(group) for group in self._groups)

    @property
    def first_replay_ts(self) -> datetime | None:
        """Start of the first bar ``run()`` will deliver (None when there is none)."""
        return self._groups[0][0].ts if self._groups else None

    async def run(self, sink: MarketDataSink) -> None:
        """Deliver the remaining bars; after a cancellation a new ``run`` resumes where the
        last one stopped."""
        if self._running:
            raise RuntimeError("ReplayFeed.run is already running")
        self._running = True
        self.health.connected = True
        self.health.detail = "replaying"
        try:
            while self._next_group < len(self._groups):
                group = self._groups[self._next_group]
                self._deliver(group, sink)
                self._next_group += 1
                await self._sleep(self._wait_after(group))
                if self._speed == 0:
                    await sink.settle()
            self.health.finished = True
            self.health.detail = f"replay finished ({self.health.messages} bars)"
        except asyncio.CancelledError:
            self.health.detail = "replay stopped"
            raise
        finally:
            self.health.connected = False
            self._running = False

    def close(self) -> None:
        """Nothing to release: the replay lives in memory."""

    async def history(self, symbol: str, end: datetime, limit: int) -> list[Bar]:
        bars = self._by_symbol.get(symbol.upper())
        if not bars or limit <= 0:
            return []
        stamps = self._ts_by_symbol[symbol.upper()]
        stop = bisect_left(stamps, ensure_utc(end, field="end"))
        known = (
            bisect_left(stamps, self._replay_from)
            if self._known_until is None
            else bisect_right(stamps, self._known_until)
        )
        stop = min(stop, known)
        return bars[max(0, stop - limit) : stop]

    def _deliver(self, group: list[Bar], sink: MarketDataSink) -> None:
        ts = group[0].ts
        if self._clock is not None:
            self._clock.set(ts + BAR_LENGTH)
        self._known_until = ts
        for bar in group:
            sink.on_bar(bar)
            self.health.messages += 1
        self.health.last_message_at = ts
        self.health.last_message_mono = (
            self._clock.monotonic() if self._clock is not None else time.monotonic()
        )

    def _wait_after(self, group: list[Bar]) -> float:
        """Seconds to wait before the next group; 0 still yields so other tasks run."""
        if self._speed == 0 or self._next_group >= len(self._groups):
            return 0.0
        gap = (self._groups[self._next_group][0].ts - group[0].ts).total_seconds()
        return min(gap, self._max_gap_s) / self._speed


def _last_session_start(bars: Sequence[Bar]) -> datetime:
    """Start of the last New York trading date in ``bars`` (sorted); with a single date
    everything is replayed, so that is the first bar."""
    if not bars:
        return datetime.min.replace(tzinfo=UTC)
    last_day = trading_day(bars[-1].ts)
    # Walk back over the last day only: files can hold months of bars.
    start = len(bars) - 1
    while start > 0 and trading_day(bars[start - 1].ts) == last_day:
        start -= 1
    return bars[start].ts
