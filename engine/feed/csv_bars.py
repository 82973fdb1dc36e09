"""Load OHLCV bars from CSV files, validating every row.

Two layouts are accepted: a combined file with a ``symbol`` column, and a per-symbol file
(``AAPL.csv``) without one, whose symbol is the file name stem. Extra columns (``vwap``,
``trade_count``...) are ignored.
"""

from __future__ import annotations

import csv
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from engine.clock import TradingDays
from engine.domain import ZERO, Bar, parse_utc, to_decimal

if TYPE_CHECKING:
    from _csv import Reader

REQUIRED_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


class BarDataError(ValueError):
    """A bar file is unreadable or holds an invalid row; the message names file and line."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


def load_bars_csv(path: Path) -> list[Bar]:
    """Read and validate a bar CSV; bars come back sorted by ``(ts, symbol)``.

    Timestamps are ISO-8601 with an offset or ``Z`` (naive ones are refused); prices and
    volumes are read as ``Decimal``. Raises ``BarDataError`` on the first problem found.
    """
    bars: list[Bar] = []
    seen: dict[tuple[str, datetime], int] = {}
    for line, bar in iter_bars_csv(path):
        key = (bar.symbol, bar.ts)
        if key in seen:
            raise _duplicate(path, line, bar, seen[key])
        seen[key] = line
        bars.append(bar)
    bars.sort(key=lambda bar: (bar.ts, bar.symbol))
    return bars


class CsvBars:
    """A bar CSV as a replay source. Validated once when built; each ``bars()`` pass then
    streams the file again, so memory stays flat however long it is. A file not sorted by
    time cannot be streamed in order: it is held in memory, sorted, instead."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held: list[Bar] | None = None
        self.counts: Mapping[str, int] = {}
        """Bars per symbol."""
        self.last_session_start: datetime | None = None
        """Start of the first bar of the file's last New York trading day."""
        self._scan()

    def bars(self, start: datetime | None = None) -> Iterator[Bar]:
        """Every bar from ``start`` on, in time order (within a minute, in file order)."""
        if self.held is not None:
            first = 0 if start is None else bisect_left(self.held, start, key=lambda b: b.ts)
            yield from self.held[first:]
            return
        for _, bar in iter_bars_csv(self.path, start):
            yield bar

    def _scan(self) -> None:
        days = TradingDays()
        counts: Counter[str] = Counter()
        minute: dict[str, int] = {}  # symbol -> line, for the timestamp being read
        last: Bar | None = None
        last_day: date | None = None
        for line, bar in iter_bars_csv(self.path):
            if last is not None and bar.ts < last.ts:
                self._hold(load_bars_csv(self.path))
                return
            if last is None or bar.ts != last.ts:
                minute.clear()
                day = days.of(bar.ts)
                if day != last_day:
                    self.last_session_start, last_day = bar.ts, day
            first = minute.setdefault(bar.symbol, line)
            if first != line:
                raise _duplicate(self.path, line, bar, first)
            counts[bar.symbol] += 1
            last = bar
        self.counts = counts

    def _hold(self, bars: list[Bar]) -> None:
        self.held = bars
        self.counts = Counter(b.symbol for b in bars)
        days = TradingDays()
        last_day = days.of(bars[-1].ts)
        start = len(bars) - 1
        while start > 0 and days.of(bars[start - 1].ts) == last_day:
            start -= 1
        self.last_session_start = bars[start].ts


def iter_bars_csv(path: Path, start: datetime | None = None) -> Iterator[tuple[int, Bar]]:
    """Each row as ``(line, bar)`` in file order, validated as it is read: constant memory.
    Rows before ``start`` are skipped after reading only their timestamp."""
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            yield from _parse(path, csv.reader(handle), start)
    except OSError as exc:
        raise BarDataError(path, None, f"cannot read file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise BarDataError(path, None, "not a UTF-8 text file") from exc
    except csv.Error as exc:
        raise BarDataError(path, None, f"malformed CSV ({exc})") from exc


def _duplicate(path: Path, line: int, bar: Bar, first: int) -> BarDataError:
    return BarDataError(
        path,
        line,
        f"duplicate bar for {bar.symbol} at {bar.ts.isoformat()} (first seen on line {first})",
    )


def _rows(reader: Reader) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the physical line each one ends on."""
    for row in reader:
        if any(cell.strip() for cell in row):
            yield reader.line_num, row


def _parse(path: Path, reader: Reader, start: datetime | None) -> Iterator[tuple[int, Bar]]:
    rows = _rows(reader)
    first = next(rows, None)
    if first is None:
        raise BarDataError(path, None, "empty file (expected a header line)")
    header_line, header = first
    columns = {name.strip().lower(): index for index, name in enumerate(header)}
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise BarDataError(
            path,
            header_line,
            f"missing column {', '.join(repr(m) for m in missing)} "
            f"(header is: {','.join(header)}; expected "
            f"timestamp,symbol,open,high,low,close,volume)",
        )
    symbol_index = columns.get("symbol")
    file_symbol = path.stem.strip().upper()
    ts_index = columns["timestamp"]
    any_bar = False
    for line, row in rows:
        any_bar = True
        if start is not None and _ts(path, line, row, ts_index) < start:
            continue
        if len(row) != len(header):
            raise BarDataError(path, line, f"expected {len(header)} fields, found {len(row)}")
        symbol = row[symbol_index].strip().upper() if symbol_index is not None else file_symbol
        if not symbol:
            raise BarDataError(path, line, "empty symbol")
        yield line, _bar(path, line, symbol, row, columns)
    if not any_bar:
        raise BarDataError(path, None, "no bars after the header")


def _ts(path: Path, line: int, row: list[str], index: int) -> datetime:
    try:
        return parse_utc(row[index].strip())
    except (ValueError, IndexError) as exc:
        raise BarDataError(path, line, str(exc)) from None


def _bar(path: Path, line: int, symbol: str, row: list[str], columns: dict[str, int]) -> Bar:
    ts = _ts(path, line, row, columns["timestamp"])

    def number(name: str) -> Decimal:
        raw = row[columns[name]].strip()
        try:
            return to_decimal(raw, field=name)
        except ValueError:
            raise BarDataError(path, line, f"bad number in '{name}': {raw!r}") from None

    open_, high, low, close, volume = (
        number(name) for name in ("open", "high", "low", "close", "volume")
    )
    if min(open_, high, low, close) <= ZERO:
        raise BarDataError(path, line, "prices must be positive")
    if high < low:
        raise BarDataError(path, line, f"high {high} is below low {low}")
    for name, value in (("open", open_), ("close", close)):
        if not low <= value <= high:
            raise BarDataError(path, line, f"{name} {value} is outside [low {low}, high {high}]")
    if volume < ZERO:
        raise BarDataError(path, line, f"negative volume {volume}")
    return Bar(symbol=symbol, ts=ts, open=open_, high=high, low=low, close=close, volume=volume)
