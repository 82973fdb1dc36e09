"""Load OHLCV bars from CSV files, validating every row.

Two layouts are accepted: a combined file with a ``symbol`` column, and a per-symbol file
(``AAPL.csv``) without one, whose symbol is the file name stem. Extra columns (``vwap``,
``trade_count``...) are ignored.
"""

from __future__ import annotations

import csv
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from io import TextIOWrapper
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from engine.clock import TradingDays
from engine.domain import ZERO, Bar, parse_utc
from engine.feed.base import RUN_BARS, bar_runs

if TYPE_CHECKING:
    from _csv import Reader

REQUIRED_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
BAR_FIELDS = ("symbol", "ts", "open", "high", "low", "close", "volume")
SKIP_BLOCK = 20_000
"""Lines a replay pass skips (days before its start, not even parsed) between two empty runs,
which let the replay give the loop a turn."""


class _OpenBar:
    """``Bar``'s slots, in its order, and nothing else: the parsing loops fill one with plain
    attribute stores and then make it a ``Bar`` (``__class__`` assignment, which CPython
    allows between classes of the same slots), frozen from then on: the same object as
    ``Bar(...)`` builds, for under half its cost (a call: 0.42 against 1.08 us; setting
    the slots through their descriptors took 0.49 us)."""

    __slots__ = BAR_FIELDS
    symbol: str
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def _can_open_bars() -> bool:
    if tuple(f.name for f in fields(Bar)) != BAR_FIELDS:
        return False
    probe = _OpenBar()
    try:
        probe.__class__ = Bar  # type: ignore[assignment]
    except TypeError:
        return False
    return True


_OPEN_BARS = _can_open_bars()


def _bar_maker() -> Callable[[str, datetime, Decimal, Decimal, Decimal, Decimal, Decimal], Bar]:
    """``Bar(...)`` at under half the cost, for the hot loop of every pass over a file: a
    frozen dataclass's ``__init__`` goes through ``object.__setattr__`` once per field; this
    fills an ``_OpenBar`` and makes it a ``Bar``. Plain ``Bar`` if that cannot be done."""
    if not _OPEN_BARS:
        return Bar
    bar_class = Bar

    def make(
        symbol: str,
        ts: datetime,
        open_: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        volume: Decimal,
    ) -> Bar:
        bar = _OpenBar()
        bar.symbol = symbol
        bar.ts = ts
        bar.open = open_
        bar.high = high
        bar.low = low
        bar.close = close
        bar.volume = volume
        bar.__class__ = bar_class  # type: ignore[assignment]  # a Bar now, frozen
        return bar  # type: ignore[return-value]

    return make


new_bar = _bar_maker()


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

    def __init__(self, path: Path, *, keep: int | None = None) -> None:
        self.path = path
        self._keep = keep
        """Bars per symbol the scan keeps from before the last trading day (the replay's
        history), so the replay does not read those days a second time."""
        self._tails: dict[str, deque[Bar]] = {}
        self._before_last_day: Mapping[str, int] = {}
        self.held: list[Bar] | None = None
        self.counts: Mapping[str, int] = {}
        """Bars per symbol."""
        self.last_session_start: datetime | None = None
        """Start of the first bar of the file's last New York trading day."""
        self._days: list[tuple[datetime, int]] = []
        self._offsets: dict[int, int] | None = None
        """For each line a day's bars start after: the byte it ends at (a pass seeks there
        instead of reading the days before); None where only reading counts lines right."""
        """Each trading day's first bar time, and the line its previous row ends on: a pass
        from a later day skips the earlier ones' lines without parsing them."""
        self._scan()

    def bars(self, start: datetime | None = None) -> Iterator[Bar]:
        """Every bar from ``start`` on, in time order (within a minute, in file order)."""
        if self.held is not None:
            first = 0 if start is None else bisect_left(self.held, start, key=lambda b: b.ts)
            yield from self.held[first:]
            return
        skip = 0
        if start is not None:
            at = bisect_right(self._days, start, key=lambda day: day[0])
            skip = self._days[at - 1][1] if at else 0
        for _, bar in iter_bars_csv(self.path, start, skip_lines=skip, ordered=True):
            yield bar

    def runs(
        self, start: datetime | None, symbols: Container[str] | None = None
    ) -> Iterator[list[Bar]]:
        """The bars of ``symbols`` (None: all) from ``start`` on, as runs: lists of
        consecutive bars of one timestamp, at most ``RUN_BARS`` long, each bar validated as it
        is read. The replay's pass: the same bars as ``bars()`` for less CPU per bar. Now and
        then an empty list while the pass skips the earlier days' lines (unparsed): the
        replay lets the loop run there."""
        if self.held is not None:
            yield from bar_runs(self.bars(start), symbols)
            return
        skip = 0
        if start is not None:
            at = bisect_right(self._days, start, key=lambda day: day[0])
            skip = self._days[at - 1][1] if at else 0
        offset = self._offsets.get(skip) if self._offsets is not None else None
        yield from iter_runs_csv(self.path, start, symbols, skip_lines=skip, offset=offset)

    def history_before(
        self, start: datetime, limit: int
    ) -> tuple[dict[str, deque[Bar]], Mapping[str, int]] | None:
        """Per symbol, the last ``limit`` (or fewer) bars before ``start`` and how many bars
        come before it in all, as the scan kept them: only when ``start`` is the start of the
        last trading day and ``limit`` is at most ``keep``; otherwise None (a pass from the
        start of the file finds them). Handed over once: the source then lets them go, so
        they do not outlive the replay's own window; a later call gets None."""
        if self._keep is None or limit > self._keep or start != self.last_session_start:
            return None
        if self.held is not None:
            return None
        kept = self._tails, self._before_last_day
        self._keep, self._tails, self._before_last_day = None, {}, {}
        return kept

    def _scan(self) -> None:
        days = TradingDays()
        counts: Counter[str] = Counter()
        minute: dict[str, int] = {}  # symbol -> line, for the timestamp being read
        last: Bar | None = None
        last_day: date | None = None
        last_line = 0
        keep = self._keep
        day_bars: dict[str, deque[Bar]] = {}  # with keep: the day's last bars per symbol
        for line, bar in iter_bars_csv(self.path):
            if last is not None and bar.ts < last.ts:
                self._tails = {}
                self._hold(load_bars_csv(self.path))
                return
            if last is None or bar.ts != last.ts:
                minute.clear()
                day = days.of(bar.ts)
                if day != last_day:
                    self.last_session_start, last_day = bar.ts, day
                    self._days.append((bar.ts, last_line))
                    if keep is not None:  # the day before is history now
                        for symbol, bars in day_bars.items():
                            tail = self._tails.setdefault(symbol, deque(maxlen=keep))
                            tail.extend(bars)
                        day_bars.clear()
                        self._before_last_day = counts.copy()
            first = minute.setdefault(bar.symbol, line)
            if first != line:
                raise _duplicate(self.path, line, bar, first)
            counts[bar.symbol] += 1
            if keep is not None:
                recent = day_bars.get(bar.symbol)
                if recent is None:
                    recent = day_bars[bar.symbol] = deque(maxlen=keep)
                recent.append(bar)
            last, last_line = bar, line
        self.counts = counts
        self._offsets = _line_ends(self.path, [line for _, line in self._days if line])

    def _hold(self, bars: list[Bar]) -> None:
        self.held = bars
        self.counts = Counter(b.symbol for b in bars)
        days = TradingDays()
        last_day = days.of(bars[-1].ts)
        start = len(bars) - 1
        while start > 0 and days.of(bars[start - 1].ts) == last_day:
            start -= 1
        self.last_session_start = bars[start].ts


def iter_bars_csv(
    path: Path, start: datetime | None = None, *, skip_lines: int = 0, ordered: bool = False
) -> Iterator[tuple[int, Bar]]:
    """Each row as ``(line, bar)`` in file order, validated as it is read: constant memory.
    Rows before ``start`` are skipped after reading only their timestamp; the first
    ``skip_lines`` lines after the header, without reading them at all. ``ordered``: the
    file is known to be in time order, so once a row reaches ``start`` the rest are not
    checked against it."""
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            yield from _parse(path, handle, start, skip_lines, ordered)
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


def _rows(reader: Reader, lines_before: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the physical line each one ends on."""
    for row in reader:
        if (row and row[0]) or any(cell.strip() for cell in row):
            yield lines_before + reader.line_num, row


def _header(path: Path, handle: TextIO) -> tuple[Reader, _RowParser, int]:
    """The reader past the header, the parser of the rows after it, the header's line."""
    reader = csv.reader(handle)
    first = next(_rows(reader), None)
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
    return reader, _RowParser(path, columns, len(header)), header_line


def _parse(
    path: Path, handle: TextIO, start: datetime | None, skip_lines: int, ordered: bool
) -> Iterator[tuple[int, Bar]]:
    reader, parse, header_line = _header(path, handle)
    rows = _rows(reader)
    if skip_lines > header_line:
        # csv.reader reads no further ahead than its row: the handle is right after the
        # header, and a row never starts inside a skipped stretch (it ends on a row's end).
        for _ in islice(handle, skip_lines - header_line):
            pass
        rows = _rows(csv.reader(handle), skip_lines)
    any_bar = skip_lines > 0
    check = start is not None
    for line, row in rows:
        any_bar = True
        if check:
            if parse.ts(line, row) < start:  # type: ignore[operator]  # check: not None
                continue
            check = not ordered  # in a file in time order, every later row is after it
        yield line, parse.bar(line, row)
    if not any_bar:
        raise BarDataError(path, None, "no bars after the header")


def _line_ends(path: Path, lines: list[int]) -> dict[int, int] | None:
    """The byte offset right after each of ``lines`` (counted from 1 at the file's start,
    as the scan counts them), from one binary pass; None when the file has a line end other
    than ``\n`` or ``\r\n`` (a bare ``\r``: only the text reader counts those) or fewer
    lines."""
    wanted = sorted(set(lines))
    ends: dict[int, int] = {}
    seen = 0  # newlines before this chunk
    position = 0  # bytes before this chunk
    carried_cr = False
    try:
        with path.open("rb") as handle:
            while len(ends) < len(wanted):
                chunk = handle.read(1 << 20)
                if not chunk:
                    return None
                if carried_cr and not chunk.startswith(b"\n"):
                    return None
                crs, crlfs = chunk.count(b"\r"), chunk.count(b"\r\n")
                carried_cr = chunk.endswith(b"\r")
                if crs != crlfs + carried_cr:
                    return None
                newlines = chunk.count(b"\n")
                at = found = 0  # newlines found in this chunk, and the byte after the last
                for line in wanted[len(ends) :]:
                    if line > seen + newlines:
                        break
                    while seen + found < line:
                        at = chunk.index(b"\n", at) + 1
                        found += 1
                    ends[line] = position + at
                seen += newlines
                position += len(chunk)
    except OSError:
        return None
    return ends


def iter_runs_csv(
    path: Path,
    start: datetime | None,
    symbols: Container[str] | None = None,
    *,
    skip_lines: int = 0,
    offset: int | None = None,
) -> Iterator[list[Bar]]:
    """The bars of a file in time order, from ``start`` on, of ``symbols`` (None: all), as
    runs (lists of consecutive bars of one timestamp, at most ``RUN_BARS``); the first
    ``skip_lines`` lines after the header are skipped unread: by seeking to ``offset`` (the
    byte they end at) when given, else reading past them with an empty list every
    ``SKIP_BLOCK`` of them. Each row it uses is validated as ``iter_bars_csv`` does (same
    errors, naming file and line); rows of other symbols are skipped unparsed."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle, ExitStack() as stack:
            yield from _runs(path, handle, start, symbols, skip_lines, offset, stack)
    except OSError as exc:
        raise BarDataError(path, None, f"cannot read file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise BarDataError(path, None, "not a UTF-8 text file") from exc
    except csv.Error as exc:
        raise BarDataError(path, None, f"malformed CSV ({exc})") from exc


def _runs(  # one loop, on purpose: it runs once per row of every replay
    path: Path,
    handle: TextIO,
    start: datetime | None,
    symbols: Container[str] | None,
    skip_lines: int,
    offset: int | None,
    stack: ExitStack,
) -> Iterator[list[Bar]]:
    reader, parse, header_line = _header(path, handle)
    lines_before = 0
    if skip_lines > header_line and offset is not None:
        binary = stack.enter_context(path.open("rb"))
        binary.seek(offset)
        reader = csv.reader(TextIOWrapper(binary, encoding="utf-8", newline=""))
        lines_before = skip_lines
    elif skip_lines > header_line:
        left = skip_lines - header_line
        while left > 0:
            step = min(left, SKIP_BLOCK)
            skipped = sum(1 for _ in islice(handle, step))
            left = left - step if skipped == step else 0
            yield []
        reader, lines_before = csv.reader(handle), skip_lines
    if not _OPEN_BARS:  # Bar is not the class this loop was written for
        yield from bar_runs((b for _, b in _parse_rest(parse, reader, lines_before)), symbols)
        return
    bar_class = Bar
    width, ts_index, symbol_index = parse.width, parse.ts_index, parse.symbol_index
    io, ih, il, ic, iv = parse.indexes
    file_symbol = parse.file_symbol
    if symbol_index is None and symbols is not None and file_symbol not in symbols:
        return
    names: dict[str, str] = {}  # symbol cell -> symbol ("" for a symbol not asked for)
    ts_text: str | None = None
    ts = datetime.min
    before = False  # the rows of this timestamp come before ``start``
    any_bar = skip_lines > 0
    run: list[Bar] = []
    for row in reader:
        if len(row) != width or not row[0]:
            if not ((row and row[0]) or any(cell.strip() for cell in row)):
                continue  # a blank line
            if len(row) != width:
                line = lines_before + reader.line_num
                raise BarDataError(path, line, f"expected {width} fields, found {len(row)}")
        any_bar = True
        text = row[ts_index]
        if text != ts_text:
            ts = parse.ts(lines_before + reader.line_num, row)
            ts_text = text
            before = start is not None and ts < start
            if run:
                yield run
                run = []
        if before:
            continue
        if symbol_index is None:
            symbol = file_symbol
        else:
            raw = row[symbol_index]
            known = names.get(raw)
            if known is None:
                known = raw.strip().upper()
                if not known:
                    raise BarDataError(path, lines_before + reader.line_num, "empty symbol")
                if symbols is not None and known not in symbols:
                    known = ""
                names[raw] = known
            if not known:
                continue
            symbol = known
        try:  # the fast path: five good numbers, a well-formed bar
            open_, high, low, close, volume = (
                Decimal(row[io]),
                Decimal(row[ih]),
                Decimal(row[il]),
                Decimal(row[ic]),
                Decimal(row[iv]),
            )
            # Comparing a NaN raises; with high finite, low, open and close are too.
            good = (
                ZERO < low <= open_ <= high
                and low <= close <= high
                and volume >= ZERO
                and high.is_finite()
                and volume.is_finite()
            )
        except InvalidOperation:
            good = False
        if good:
            bar = _OpenBar()
            bar.symbol = symbol
            bar.ts = ts
            bar.open = open_
            bar.high = high
            bar.low = low
            bar.close = close
            bar.volume = volume
            bar.__class__ = bar_class  # type: ignore[assignment]  # a Bar now, frozen
            run.append(bar)  # type: ignore[arg-type]
        else:  # says what is wrong
            run.append(parse.checked(lines_before + reader.line_num, row, symbol, ts))
        if len(run) >= RUN_BARS:
            yield run
            run = []
    if run:
        yield run
    if not any_bar:
        raise BarDataError(path, None, "no bars after the header")


def _parse_rest(parse: _RowParser, reader: Reader, lines_before: int) -> Iterator[tuple[int, Bar]]:
    for line, row in _rows(reader, lines_before):
        yield line, parse.bar(line, row)


class _RowParser:
    """One row at a time, the hot loop of every replay pass: a minute's rows share their
    timestamp text and a file repeats its symbols, so both are parsed once."""

    def __init__(self, path: Path, columns: dict[str, int], width: int) -> None:
        self.path = path
        self.width = width
        self.ts_index = columns["timestamp"]
        self.symbol_index = columns.get("symbol")
        self.file_symbol = path.stem.strip().upper()
        self.number_index = [(n, columns[n]) for n in ("open", "high", "low", "close", "volume")]
        io, ih, il, ic, iv = (i for _, i in self.number_index)
        self.indexes = (io, ih, il, ic, iv)
        self._ts_text: str | None = None  # no row read yet: even an empty cell is parsed
        self._ts = datetime.min
        self._symbols: dict[str, str] = {}

    def ts(self, line: int, row: list[str]) -> datetime:
        text = row[self.ts_index] if len(row) > self.ts_index else ""
        if text != self._ts_text:
            try:
                self._ts = parse_utc(text.strip())
            except ValueError as exc:
                raise BarDataError(self.path, line, str(exc)) from None
            self._ts_text = text
        return self._ts

    def bar(self, line: int, row: list[str]) -> Bar:
        if len(row) != self.width:
            raise BarDataError(self.path, line, f"expected {self.width} fields, found {len(row)}")
        symbol = self.file_symbol
        if self.symbol_index is not None:
            raw = row[self.symbol_index]
            symbol = self._symbols.get(raw) or self._symbols.setdefault(raw, raw.strip().upper())
        if not symbol:
            raise BarDataError(self.path, line, "empty symbol")
        ts = self._ts if row[self.ts_index] == self._ts_text else self.ts(line, row)
        io, ih, il, ic, iv = self.indexes
        try:  # the fast path: five good numbers, a well-formed bar
            open_, high, low, close, volume = (
                Decimal(row[io]),
                Decimal(row[ih]),
                Decimal(row[il]),
                Decimal(row[ic]),
                Decimal(row[iv]),
            )
            if (
                open_.is_finite()
                and high.is_finite()
                and low.is_finite()
                and close.is_finite()
                and volume.is_finite()
                and ZERO < low <= open_ <= high
                and low <= close <= high
                and volume >= ZERO
            ):
                return new_bar(symbol, ts, open_, high, low, close, volume)
        except InvalidOperation:
            pass
        return self.checked(line, row, symbol, ts)

    def checked(self, line: int, row: list[str], symbol: str, ts: datetime) -> Bar:
        """The slow path, for a row the fast path did not accept: says what is wrong."""
        open_, high, low, close, volume = (
            self._number(line, row, n, i) for n, i in self.number_index
        )
        if open_ <= ZERO or high <= ZERO or low <= ZERO or close <= ZERO:
            raise BarDataError(self.path, line, "prices must be positive")
        if high < low:
            raise BarDataError(self.path, line, f"high {high} is below low {low}")
        for name, value in (("open", open_), ("close", close)):
            if not low <= value <= high:
                raise BarDataError(
                    self.path, line, f"{name} {value} is outside [low {low}, high {high}]"
                )
        if volume < ZERO:
            raise BarDataError(self.path, line, f"negative volume {volume}")
        return Bar(symbol, ts, open_, high, low, close, volume)

    def _number(self, line: int, row: list[str], name: str, index: int) -> Decimal:
        raw = row[index]
        try:
            value = Decimal(raw)  # like to_decimal: surrounding blanks allowed
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite():
            raise BarDataError(self.path, line, f"bad number in '{name}': {raw.strip()!r}")
        return value
