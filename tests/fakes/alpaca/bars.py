"""Minute bars the fake has seen (history plus everything pushed), queried like Alpaca's
``/v2/stocks/bars``: symbols in alphabetical order, each in time order, ``limit`` counting
bars across all symbols, and an opaque ``next_page_token`` when more remain."""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from engine.clock import trading_day
from engine.domain import Bar, parse_utc


class BadPageToken(ValueError):
    pass


class BarStore:
    def __init__(self, bars: Iterable[Bar] = ()) -> None:
        self._bars: dict[str, list[Bar]] = {}
        self._stamps: dict[str, list[datetime]] = {}
        for bar in bars:
            self.add(bar)

    def add(self, bar: Bar) -> None:
        """Insert a bar; a second bar for the same symbol and minute replaces the first."""
        bars = self._bars.setdefault(bar.symbol, [])
        stamps = self._stamps.setdefault(bar.symbol, [])
        at = bisect_left(stamps, bar.ts)
        if at < len(stamps) and stamps[at] == bar.ts:
            bars[at] = bar
        else:
            bars.insert(at, bar)
            stamps.insert(at, bar.ts)

    def last_close_before(self, symbol: str, ts: datetime) -> Decimal | None:
        """The close of the last bar of a trading day before ``ts``'s (the previous close)."""
        bars = self._bars.get(symbol, [])
        day = trading_day(ts)
        for bar in reversed(bars):
            if trading_day(bar.ts) < day:
                return bar.close
        return None

    def query(
        self,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        limit: int,
        *,
        descending: bool = False,
        page_token: str | None = None,
    ) -> tuple[dict[str, list[Bar]], str | None]:
        """Bars with ``start <= ts <= end``; returns the page and the next page's token."""
        items: list[Bar] = []
        for symbol in sorted(set(symbols)):
            stamps = self._stamps.get(symbol, [])
            found = self._bars.get(symbol, [])[
                bisect_left(stamps, start) : bisect_right(stamps, end)
            ]
            items.extend(reversed(found) if descending else found)
        begin = 0
        if page_token is not None:
            symbol, ts = _decode(page_token)
            begin = next(
                (i + 1 for i, bar in enumerate(items) if bar.symbol == symbol and bar.ts == ts),
                -1,
            )
            if begin < 0:
                raise BadPageToken("invalid page_token")
        page = items[begin : begin + limit]
        grouped: dict[str, list[Bar]] = {}
        for bar in page:
            grouped.setdefault(bar.symbol, []).append(bar)
        more = begin + limit < len(items)
        return grouped, (_encode(page[-1]) if more and page else None)


def _encode(bar: Bar) -> str:
    raw = json.dumps({"S": bar.symbol, "t": bar.ts.isoformat()}).encode()
    return base64.b64encode(raw).decode()


def _decode(token: str) -> tuple[str, datetime]:
    try:
        data = json.loads(base64.b64decode(token.encode(), validate=True))
        return str(data["S"]), parse_utc(str(data["t"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadPageToken("invalid page_token") from None
