"""Load OHLCV bars from CSV files, validating every row.

Two layouts are accepted: a combined file with a ``symbol`` column, and a per-symbol file
(``AAPL.csv``) without one, whose symbol is the file name stem. Extra columns (``vwap``,
``trade_count``...) are ignored.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

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
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            bars = _parse(path, csv.reader(handle))
    except OSError as exc:
        raise BarDataError(path, None, f"cannot read file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise BarDataError(path, None, "not a UTF-8 text file") from exc
    except csv.Error as exc:
        raise BarDataError(path, None, f"malformed CSV ({exc})") from exc
    bars.sort(key=lambda bar: (bar.ts, bar.symbol))
    return bars


def _rows(reader: Reader) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the physical line each one ends on."""
    for row in reader:
        if any(cell.strip() for cell in row):
            yield reader.line_num, row


def _parse(path: Path, reader: Reader) -> list[Bar]:
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

    bars: list[Bar] = []
    seen: dict[tuple[str, datetime], int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise BarDataError(path, line, f"expected {len(header)} fields, found {len(row)}")
        symbol = row[symbol_index].strip().upper() if symbol_index is not None else file_symbol
        if not symbol:
            raise BarDataError(path, line, "empty symbol")
        bar = _bar(path, line, symbol, row, columns)
        key = (bar.symbol, bar.ts)
        if key in seen:
            raise BarDataError(
                path,
                line,
                f"duplicate bar for {bar.symbol} at {bar.ts.isoformat()} "
                f"(first seen on line {seen[key]})",
            )
        seen[key] = line
        bars.append(bar)
    if not bars:
        raise BarDataError(path, None, "no bars after the header")
    return bars


def _bar(path: Path, line: int, symbol: str, row: list[str], columns: dict[str, int]) -> Bar:
    raw_ts = row[columns["timestamp"]].strip()
    try:
        ts = parse_utc(raw_ts)
    except ValueError as exc:
        raise BarDataError(path, line, str(exc)) from None

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
