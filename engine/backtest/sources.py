"""Where a backtest's bars come from: a CSV in the replay format, or the history cache.

Both answer the same three questions: which symbols they hold, how many bars each New York
trading day has (a light pass that reads timestamps only, for progress, windows and
estimates), and the bars of a span in time order. Rows are fully validated as they are
read (``engine.feed.csv_bars``): a bad row stops the run naming its file and line.

A source is described by plain data (``SourceSpec``) so that walk-forward workers in other
processes can open it again.
"""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from engine.clock import trading_day
from engine.domain import Bar, parse_utc
from engine.feed.csv_bars import BarDataError, iter_bars_csv, load_bars_csv

Span = tuple[datetime, datetime]
"""First and last bar start, both included."""


def timestamps(path: Path) -> Iterator[datetime]:
    """The ``timestamp`` column of a bar CSV, parsed once per distinct value."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]
            if "timestamp" not in header:
                raise BarDataError(path, 1, "missing column 'timestamp'")
            index = header.index("timestamp")
            last_text, last = "", None
            for row in reader:
                if not row or len(row) <= index:
                    continue
                text = row[index].strip()
                if text != last_text:
                    try:
                        last, last_text = parse_utc(text), text
                    except ValueError as exc:
                        raise BarDataError(path, reader.line_num, str(exc)) from None
                assert last is not None
                yield last
    except OSError as exc:
        raise BarDataError(path, None, f"cannot read file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise BarDataError(path, None, "not a UTF-8 text file") from exc


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A CSV file (``csv``), or the cache under ``data_dir`` for ``feed`` and ``symbols``."""

    csv: Path | None = None
    data_dir: Path | None = None
    feed: str = "iex"
    symbols: tuple[str, ...] = ()

    def open(self) -> BarSource:
        if self.csv is not None:
            return CsvSource(self.csv)
        assert self.data_dir is not None
        from engine.backtest.history import CacheSource, HistoryCache  # it imports this module

        return CacheSource(HistoryCache(self.data_dir, self.feed), self.symbols)


class BarSource(ABC):
    description: str
    spec: SourceSpec

    @property
    @abstractmethod
    def symbols(self) -> tuple[str, ...]:
        """The symbols it holds bars of."""

    @abstractmethod
    def day_counts(self) -> dict[date, int]:
        """Bars per New York trading date, oldest first."""

    @abstractmethod
    def bars(self, span: Span | None = None) -> Iterator[Bar]:
        """Bars with ``span[0] <= ts <= span[1]`` (all without a span), in time order."""


class CsvSource(BarSource):
    """A replay-format CSV. A file not sorted by time is read into memory and sorted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = SourceSpec(csv=path)
        self.description = str(path)
        self._held: list[Bar] | None = None
        self._days: dict[date, int] = {}
        last: datetime | None = None
        for ts in timestamps(path):
            if last is not None and ts < last:
                self._held = load_bars_csv(path)  # sorted by (ts, symbol)
                self._days = {}
                for bar in self._held:
                    day = trading_day(bar.ts)
                    self._days[day] = self._days.get(day, 0) + 1
                break
            if ts != last:
                day = trading_day(ts)
            self._days[day] = self._days.get(day, 0) + 1
            last = ts
        self._symbols: tuple[str, ...] | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        if self._symbols is None:
            self._symbols = tuple(sorted(_symbols_in(self.path)))
        return self._symbols

    def day_counts(self) -> dict[date, int]:
        return dict(sorted(self._days.items()))

    def bars(self, span: Span | None = None) -> Iterator[Bar]:
        start, end = span if span is not None else (None, None)
        if self._held is not None:
            stream: Iterator[Bar] = (b for b in self._held if start is None or b.ts >= start)
        else:
            stream = (bar for _, bar in iter_bars_csv(self.path, start))
        for bar in stream:
            if end is not None and bar.ts > end:
                return
            yield bar


def _symbols_in(path: Path) -> set[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        if "symbol" not in header:
            return {path.stem.strip().upper()}
        index = header.index("symbol")
        return {row[index].strip().upper() for row in reader if len(row) > index}
