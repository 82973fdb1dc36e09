"""Replay recorded minute bars as if they arrived live, driving a ``ReplayClock``.

Bars before ``replay_from`` are history (served by ``history()``, as a live feed would serve
its REST backfill); bars from ``replay_from`` on are delivered by ``run()`` one timestamp
group at a time, with the clock set to each bar's close before the sink sees it. The bars
come from a ``BarSource``: a list in memory, or a CSV streamed on each pass.

The feed's own work never holds the loop for long: reading the next minute and handing a
minute over both stop every ``FEED_SLICE_S`` to let the loop run (a 500-symbol minute is
handed over in parts, the sink told with ``receiving``), in the same order as in one call;
at full speed the next minute still waits until the engine has settled the last one (its
fills in the book; their journal commits may still run, but not past the end).
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Protocol

from engine.clock import trading_day
from engine.domain import Bar, ensure_utc
from engine.feed.base import FEED_SLICE_S, FeedHealth, MarketDataSink, Turns, bar_runs

BAR_LENGTH = timedelta(minutes=1)
SAMPLE_BARS_PATH = Path(__file__).resolve().parent / "data" / "sample_bars.csv"

Sleep = Callable[[float], Awaitable[object]]


class SettableClock(Protocol):
    """What the replay needs from its clock: ``ReplayClock`` (or ``TestClock``) fits."""

    def set(self, ts: datetime) -> None: ...

    def monotonic(self) -> float: ...


class BarSource(Protocol):
    """Bars a replay reads, any number of times, in time order: ``BarList`` (in memory) or
    ``engine.feed.csv_bars.CsvBars`` (streamed from the file on every pass)."""

    counts: Mapping[str, int]
    """Bars per symbol."""
    last_session_start: datetime | None

    def bars(self, start: datetime | None = None) -> Iterator[Bar]: ...


class BarList:
    """Bars already in memory, as a ``BarSource``."""

    def __init__(self, bars: Iterable[Bar]) -> None:
        self._bars = sorted(bars, key=lambda b: (b.ts, b.symbol))
        self._stamps = [b.ts for b in self._bars]
        self.counts: Mapping[str, int] = Counter(b.symbol for b in self._bars)
        self.last_session_start: datetime | None = (
            _last_session_start(self._bars) if self._bars else None
        )

    def bars(self, start: datetime | None = None) -> Iterator[Bar]:
        first = 0 if start is None else bisect_left(self._stamps, start)
        return iter(self._bars[first:])


class ReplayFeed:
    """A ``MarketDataFeed`` over a fixed set of bars.

    ``speed``: 0 = as fast as possible, 1 = real time, N = N times faster. Waits between bar
    groups longer than ``max_gap`` of market time (overnight, halts) are shortened to it, so a
    multi-day replay does not sit idle through the night. ``sleep`` is injectable for tests.
    ``history_limit``: bars per symbol kept for ``history()`` (None: all); with a streamed
    source that keeps memory flat in the length of the file. ``slice_s``: the longest stretch
    of the feed's own work before it lets the loop run.
    """

    def __init__(
        self,
        bars: Sequence[Bar] | BarSource,
        *,
        clock: SettableClock | None = None,
        speed: float = 0.0,
        replay_from: datetime | None = None,
        symbols: Collection[str] | None = None,
        max_gap: timedelta = timedelta(minutes=5),
        sleep: Sleep = asyncio.sleep,
        history_limit: int | None = None,
        slice_s: float = FEED_SLICE_S,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be 0 (as fast as possible) or positive")
        self._source: BarSource = BarList(bars) if isinstance(bars, Sequence) else bars
        self._wanted = {s.upper() for s in symbols} if symbols is not None else None
        self.health = FeedHealth()
        self._clock = clock
        self._speed = speed
        self._max_gap_s = max_gap.total_seconds()
        self._sleep = sleep
        default_start = self._source.last_session_start or datetime.min.replace(tzinfo=UTC)
        self._replay_from = (
            ensure_utc(replay_from, field="replay_from")
            if replay_from is not None
            else default_start
        )
        # Per symbol, the newest bars delivered so far (history before the replay, then
        # what it has delivered): a live feed never serves bars from the future.
        self._recent: dict[str, deque[Bar]] = {
            s: deque(maxlen=history_limit) for s in self._source.counts if self._wants(s)
        }
        self._history_count = 0
        # A source that kept the history when it read the file (``CsvBars(keep=...)``) is
        # not read again from its start.
        history_before = getattr(self._source, "history_before", None)
        kept = None
        if history_before is not None and history_limit is not None:
            kept = history_before(self._replay_from, history_limit)
        if kept is not None:
            tails, before = kept
            for symbol, recent in self._recent.items():
                recent.extend(tails.get(symbol, ()))
                self._history_count += before.get(symbol, 0)
        else:
            for bar in self._source.bars():
                if bar.ts >= self._replay_from:
                    break
                if bar.symbol in self._recent:
                    self._recent[bar.symbol].append(bar)
                    self._history_count += 1
        self.slice_s = slice_s
        """Read when ``run`` starts."""
        self._delivered_ts: datetime | None = None
        self._rest: list[Bar] = []
        """The bars of the timestamp being handed over that the sink has not seen yet (a run
        cancelled in the middle of a minute: the next one starts with them)."""
        self._running = False
        start = self._replay_from.isoformat()
        self.health.detail = f"{self.replay_bars} bars to replay from {start}"

    @property
    def replay_from(self) -> datetime:
        return self._replay_from

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._recent))

    @property
    def history_bars(self) -> int:
        return self._history_count

    @property
    def replay_bars(self) -> int:
        total = sum(self._source.counts[s] for s in self._recent)
        return total - self._history_count

    async def run(self, sink: MarketDataSink) -> None:
        """Deliver the remaining bars; after a cancellation a new ``run`` resumes where the
        last one stopped."""
        if self._running:
            raise RuntimeError("ReplayFeed.run is already running")
        self._running = True
        self.health.connected = True
        self.health.detail = "replaying"
        turns = Turns(self.slice_s)
        groups = self._groups(turns)
        try:
            group = self._rest or await self._next(groups, turns)
            while group is not None:
                await self._deliver(group, sink, turns)
                following = await self._next(groups, turns)
                await self._sleep(self._wait_between(group, following))
                if self._speed == 0:
                    await sink.settle(journaled=following is None)
                turns.restart()
                group = following
            self.health.finished = True
            self.health.detail = f"replay finished ({self.health.messages} bars)"
        except asyncio.CancelledError:
            self.health.detail = "replay stopped"
            raise
        finally:
            groups.close()
            self.health.connected = False
            self._running = False

    def close(self) -> None:
        """Nothing to release: files are open only while a pass reads them."""

    async def history(self, symbol: str, end: datetime, limit: int) -> list[Bar]:
        recent = self._recent.get(symbol.upper())
        if not recent or limit <= 0:
            return []
        end = ensure_utc(end, field="end")
        before = [b for b in recent if b.ts < end]
        return before[-limit:]

    def _wants(self, symbol: str) -> bool:
        return self._wanted is None or symbol in self._wanted

    def _groups(self, turns: Turns) -> Generator[list[Bar]]:
        """The bars still to deliver, one timestamp at a time, each sorted by symbol; an empty
        list in between whenever the feed has used up its slice of the loop (``_next`` lets
        the loop run then)."""
        after = self._delivered_ts
        start = self._replay_from if after is None else max(after, self._replay_from)
        wanted = self._recent
        over = turns.over
        group: list[Bar] = []
        for run in _runs(self._source, start, wanted):
            if not run:  # the source is skipping lines
                if over():
                    yield []
                continue
            ts = run[0].ts
            if after is not None and ts <= after:
                continue
            if not group:
                group = run
            elif ts == group[0].ts:
                group += run
            else:
                group.sort(key=_SYMBOL)  # O(n) when the file had it in symbol order
                yield group
                group = run
            if over():
                yield []
        if group:
            group.sort(key=_SYMBOL)
            yield group

    @staticmethod
    async def _next(groups: Iterator[list[Bar]], turns: Turns) -> list[Bar] | None:
        while (group := next(groups, None)) is not None:
            if group:
                return group
            await turns.give()
        return None

    async def _deliver(self, group: list[Bar], sink: MarketDataSink, turns: Turns) -> None:
        """Hand one timestamp's bars to the sink in order, letting the loop run whenever the
        slice is used up (the sink is told the minute comes in parts)."""
        ts = group[0].ts
        if self._clock is not None:
            self._clock.set(ts + BAR_LENGTH)
        self._delivered_ts = ts
        recent, on_bar, over = self._recent, sink.on_bar, turns.over
        end = len(group)
        done = 0  # bars of ``group`` the sink has seen
        parts = False
        try:
            while done < end:
                bar = group[done]
                done += 1
                recent[bar.symbol].append(bar)
                on_bar(bar)
                if done < end and over():
                    self._delivered(done, group)
                    group, end, done = group[done:], end - done, 0
                    self._rest = group
                    if not parts:
                        parts = True
                        sink.receiving(True)
                    await turns.give()
        finally:
            self._delivered(done, group)
            if parts:  # the minute is in (or the run was cancelled: the next starts afresh)
                sink.receiving(False)
        self._rest = []

    def _delivered(self, count: int, group: list[Bar]) -> None:
        health = self.health
        health.messages += count
        health.last_message_at = group[0].ts
        health.last_message_mono = (
            self._clock.monotonic() if self._clock is not None else time.monotonic()
        )

    def _wait_between(self, group: list[Bar], following: list[Bar] | None) -> float:
        """Seconds to wait before the next group; 0 still yields so other tasks run."""
        if self._speed == 0 or following is None:
            return 0.0
        gap = (following[0].ts - group[0].ts).total_seconds()
        return min(gap, self._max_gap_s) / self._speed


_SYMBOL = attrgetter("symbol")


def _runs(source: BarSource, start: datetime, wanted: Collection[str]) -> Iterator[list[Bar]]:
    """The source's bars of ``wanted`` symbols from ``start`` on, as runs (``bar_runs``);
    a source with its own ``runs`` (``CsvBars``) makes them for less CPU."""
    runs = getattr(source, "runs", None)
    if runs is not None:
        return iter(runs(start, wanted))
    return bar_runs(source.bars(start), wanted)


def _last_session_start(bars: Sequence[Bar]) -> datetime:
    """Start of the last New York trading date in ``bars`` (sorted); with a single date
    everything is replayed, so that is the first bar."""
    last_day = trading_day(bars[-1].ts)
    # Walk back over the last day only: files can hold months of bars.
    start = len(bars) - 1
    while start > 0 and trading_day(bars[start - 1].ts) == last_day:
        start -= 1
    return bars[start].ts
