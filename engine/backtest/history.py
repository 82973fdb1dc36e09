"""The local history cache: minute bars fetched from Alpaca, kept in the data dir.

Layout: ``<data dir>/history/<feed>/<SYMBOL>/<first>_<last>.csv``, one file per fetched
page, in the replay's CSV format (``timestamp,symbol,open,high,low,close,volume``). A file's
name is the span of minutes it covers, both ends included, in UTC (``20261119T1430Z``):
every bar the API has for that symbol in that span is in the file, and a span with no bars
(a holiday, a symbol that did not trade) is an empty file. Files are written to a temporary
name, flushed to disk, then renamed, so a page is either stored whole or not at all; spans
never overlap, so nothing is stored twice. ``missing`` is what a download still has to fetch,
which is what makes an interrupted download resume where it stopped.

The backtest (``run_bot.py backtest --symbols``) and the simulator's replay
(``SIM_REPLAY_SYMBOLS``) read it through ``bars``.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from pathlib import Path

from config import Settings
from engine.backtest.sources import BarSource, SourceSpec, timestamps
from engine.clock import NEW_YORK, trading_day
from engine.domain import Bar, ensure_utc
from engine.feed.csv_bars import iter_bars_csv

MINUTE = timedelta(minutes=1)
HISTORY_DIR = "history"
HEADER = "timestamp,symbol,open,high,low,close,volume\n"
_STAMP = "%Y%m%dT%H%MZ"
_NAME = re.compile(r"(\d{8}T\d{4}Z)_(\d{8}T\d{4}Z)\.csv")

Span = tuple[datetime, datetime]
"""First and last minute, both included."""
ALL_TIME: Span = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def day_span(first: date, last: date) -> Span:
    """Every minute of the New York dates ``first`` to ``last``, as a UTC span."""
    start = datetime.combine(first, time(0), NEW_YORK).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), NEW_YORK).astimezone(UTC)
    return start, end - MINUTE


@dataclass(frozen=True, slots=True)
class Chunk:
    symbol: str
    first: datetime
    last: datetime
    path: Path


class HistoryCache:
    def __init__(self, data_dir: Path, feed: str = "iex") -> None:
        self.data_dir = data_dir
        self.feed = feed
        self.root = data_dir / HISTORY_DIR / feed

    # ---- what is there -------------------------------------------------------------------

    def chunks(self, symbol: str) -> list[Chunk]:
        """The symbol's stored spans, oldest first (leftover temporary files ignored)."""
        folder = self.root / symbol.upper()
        found = []
        for path in folder.glob("*.csv") if folder.is_dir() else ():
            match = _NAME.fullmatch(path.name)
            if match is None:
                continue
            first, last = (datetime.strptime(m, _STAMP).replace(tzinfo=UTC) for m in match.groups())
            found.append(Chunk(symbol.upper(), first, last, path))
        return sorted(found, key=attrgetter("first"))

    def symbols(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.chunks(p.name))

    def missing(self, symbol: str, span: Span) -> list[Span]:
        """The parts of ``span`` no stored chunk covers, oldest first."""
        start, end = span
        gaps: list[Span] = []
        cursor = start
        for chunk in self.chunks(symbol):
            if chunk.last < cursor or chunk.first > end:
                continue
            if chunk.first > cursor:
                gaps.append((cursor, chunk.first - MINUTE))
            cursor = max(cursor, chunk.last + MINUTE)
            if cursor > end:
                break
        if cursor <= end:
            gaps.append((cursor, end))
        return gaps

    def day_counts(self, symbols: Iterable[str], span: Span) -> dict[date, int]:
        """Stored bars per New York trading date in ``span`` (timestamps only are read)."""
        counts: dict[date, int] = {}
        start, end = span
        for symbol in symbols:
            for chunk in self._touching(symbol, span):
                for ts in timestamps(chunk.path):
                    if start <= ts <= end:
                        day = trading_day(ts)
                        counts[day] = counts.get(day, 0) + 1
        return dict(sorted(counts.items()))

    # ---- reading ------------------------------------------------------------------------

    def bars(self, symbols: Sequence[str], span: Span) -> Iterator[Bar]:
        """The symbols' stored bars in ``span``, in time order (symbols alphabetically
        within a minute), streamed from the files."""
        streams = [self._symbol_bars(s.upper(), span) for s in sorted(set(symbols))]
        return heapq.merge(*streams, key=attrgetter("ts", "symbol"))

    def _symbol_bars(self, symbol: str, span: Span) -> Iterator[Bar]:
        start, end = span
        for chunk in self._touching(symbol, span):
            for _, bar in iter_bars_csv(chunk.path, start if chunk.first < start else None):
                if bar.ts > end:
                    break
                yield bar

    def _touching(self, symbol: str, span: Span) -> list[Chunk]:
        start, end = span
        return [c for c in self.chunks(symbol) if c.last >= start and c.first <= end]

    # ---- writing ------------------------------------------------------------------------

    def discard_partial(self, symbol: str) -> int:
        """Remove pages a killed download left half written (never read); how many."""
        folder = self.root / symbol.upper()
        leftovers = list(folder.glob("*.part")) if folder.is_dir() else []
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def store(self, symbol: str, span: Span, bars: Sequence[Bar]) -> Path:
        """Keep every bar the API has for ``symbol`` in ``span`` (which must not overlap a
        stored chunk), all or nothing."""
        symbol = symbol.upper()
        first, last = (ensure_utc(t) for t in span)
        if any(b.symbol != symbol or not first <= b.ts <= last for b in bars):
            raise ValueError(f"{symbol}: a bar is outside {first.isoformat()}..{last.isoformat()}")
        folder = self.root / symbol
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{first:{_STAMP}}_{last:{_STAMP}}.csv"
        temporary = path.with_suffix(".part")
        rows = [HEADER]
        rows += [
            f"{b.ts:%Y-%m-%dT%H:%M:%SZ},{b.symbol},{b.open},{b.high},{b.low},{b.close},{b.volume}\n"
            for b in sorted(bars, key=attrgetter("ts"))
        ]
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            handle.writelines(rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _sync_dir(folder)
        return path


class CacheSource(BarSource):
    """Symbols from the history cache (``engine.backtest.history``)."""

    def __init__(self, cache: HistoryCache, symbols: Sequence[str]) -> None:
        self.cache = cache
        self._symbols = tuple(sorted({s.upper() for s in symbols}))
        self.spec = SourceSpec(data_dir=cache.data_dir, feed=cache.feed, symbols=self._symbols)
        self.description = f"the history cache ({cache.root})"
        self._days: dict[date, int] | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s for s in self._symbols if self.cache.chunks(s))

    def day_counts(self) -> dict[date, int]:
        if self._days is None:
            self._days = self.cache.day_counts(self._symbols, ALL_TIME)
        return dict(self._days)

    def bars(self, span: Span | None = None) -> Iterator[Bar]:
        return self.cache.bars(self._symbols, span or ALL_TIME)


class CachedReplay:
    """Days of the cache as the simulator's replay source (``engine.feed.replay.BarSource``):
    the bars of ``symbols`` in ``span``, counted per symbol once, streamed on every pass."""

    def __init__(self, cache: HistoryCache, symbols: Sequence[str], span: Span) -> None:
        self._cache = cache
        self._symbols = tuple(symbols)
        self._span = span
        counts: dict[str, int] = {}
        last: datetime | None = None
        for symbol in self._symbols:
            for chunk in cache._touching(symbol, span):
                for ts in timestamps(chunk.path):
                    if span[0] <= ts <= span[1]:
                        counts[symbol] = counts.get(symbol, 0) + 1
                        last = ts if last is None else max(last, ts)
        self.counts: Mapping[str, int] = counts
        self.last_session_start: datetime | None = None
        if last is not None:  # the first bar of the last trading day
            day_start, _ = day_span(trading_day(last), trading_day(last))
            first = next(self.bars(day_start), None)
            self.last_session_start = None if first is None else first.ts

    def bars(self, start: datetime | None = None) -> Iterator[Bar]:
        first = self._span[0] if start is None else max(start, self._span[0])
        return self._cache.bars(self._symbols, (first, self._span[1]))


def cached_replay(settings: Settings, symbols: Sequence[str]) -> CachedReplay:
    """``SIM_REPLAY_START``..``SIM_REPLAY_END`` of the cache (``ALPACA_DATA_FEED``) for the
    strategies' symbols; ``ValueError`` saying how to fetch them when it holds none."""
    sim = settings.sim
    assert sim.replay_start is not None
    assert sim.replay_end is not None
    cache = HistoryCache(settings.storage.data_dir, settings.alpaca.data_feed)
    replay = CachedReplay(cache, symbols, day_span(sim.replay_start, sim.replay_end))
    if not replay.counts:
        listed = ",".join(symbols)
        raise ValueError(
            f"the history cache ({cache.root}) holds no bars for {', '.join(symbols)} from "
            f"{sim.replay_start} to {sim.replay_end} (SIM_REPLAY_START, SIM_REPLAY_END): "
            f"fetch them with python run_bot.py fetch-bars --symbols {listed} --start "
            f"{sim.replay_start} --end {sim.replay_end}"
        )
    return replay


def _sync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the directory)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
