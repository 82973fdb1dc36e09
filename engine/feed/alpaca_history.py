"""Warm-up minute bars from Alpaca's historical market-data API.

alpaca-py's ``StockHistoricalDataClient`` is synchronous, so every request runs on one
dedicated thread (which also keeps the client single-threaded) with a socket timeout and an
``asyncio`` hard limit. Raw JSON comes back (``raw_data=True``) and becomes our ``Bar``
directly: no pandas, no float kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from alpaca.common.enums import Sort
from alpaca.data.enums import DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from engine.broker.alpaca.rest import guarded
from engine.domain import Bar, ensure_utc, parse_utc, to_decimal
from engine.errors import BrokerTimeout

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)


def bar_from_json(symbol: str, raw: object) -> Bar:
    """One Alpaca bar object (``t o h l c v``) as a ``Bar``; ``ValueError`` when malformed."""
    if not isinstance(raw, Mapping):
        raise ValueError("bar is not an object")
    ts = raw.get("t")
    if not isinstance(ts, str):
        raise ValueError("bar without a timestamp")
    bar = Bar(
        symbol=symbol.upper(),
        ts=parse_utc(ts, field="t"),
        open=to_decimal(raw.get("o"), field="o"),
        high=to_decimal(raw.get("h"), field="h"),
        low=to_decimal(raw.get("l"), field="l"),
        close=to_decimal(raw.get("c"), field="c"),
        volume=to_decimal(raw.get("v"), field="v"),
    )
    if min(bar.open, bar.high, bar.low, bar.close) <= 0 or bar.volume < 0:
        raise ValueError("bar prices must be positive and volume not negative")
    if bar.high < max(bar.open, bar.close, bar.low) or bar.low > min(bar.open, bar.close):
        raise ValueError("bar high/low do not bracket its open and close")
    return bar


class MinuteBarsClient:
    """alpaca-py's ``StockHistoricalDataClient`` asked for minute bars: one request at a time
    on a dedicated thread (which also keeps the client single-threaded), within
    ``timeout_s`` (a socket timeout, and an ``asyncio`` hard limit past which
    ``BrokerTimeout`` is raised). The warm-up history and ``run_bot.py fetch-bars`` both ask
    through it."""

    def __init__(
        self,
        factory: Callable[[], StockHistoricalDataClient],
        *,
        feed: str,
        timeout_s: float,
        thread_name: str,
    ) -> None:
        self._factory = factory
        self._client: StockHistoricalDataClient | None = None
        self._feed = DataFeed(feed)
        self._timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    async def request(
        self, symbol: str, start: datetime, end: datetime, limit: int, *, sort: Sort
    ) -> Any:
        """One request's raw reply (``raw_data``: bar objects by symbol), not checked."""
        request = StockBarsRequest(
            symbol_or_symbols=symbol,
            timeframe=TimeFrame.Minute,
            start=start,
            end=end,
            limit=limit,
            feed=self._feed,
            sort=sort,
        )
        loop = asyncio.get_running_loop()
        call = functools.partial(self._fetch, request)
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, call), self._timeout_s)
        except TimeoutError:
            raise BrokerTimeout(
                f"Alpaca market data did not answer within {self._timeout_s:g} s"
            ) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client._session.close()

    def _fetch(self, request: StockBarsRequest) -> Any:
        if self._client is None:
            self._client = self._factory()
        client = self._client
        return guarded("historical bars", self._timeout_s, lambda: client.get_stock_bars(request))


class AlpacaHistory:
    """Minute bars before a time, oldest first, for the strategy's warm-up."""

    def __init__(
        self,
        client_factory: Callable[[], StockHistoricalDataClient],
        *,
        feed: str,
        timeout_s: float,
        lookback_days: int = 7,
    ) -> None:
        self._client = MinuteBarsClient(
            client_factory, feed=feed, timeout_s=timeout_s, thread_name="alpaca-history"
        )
        self._lookback = timedelta(days=lookback_days)

    async def bars(self, symbol: str, end: datetime, limit: int) -> list[Bar]:
        """Complete minute bars (``ts + 1 min <= end``), at most ``limit``, oldest first."""
        if limit <= 0:
            return []
        end = ensure_utc(end, field="end")
        symbol = symbol.upper()
        # One more: the newest bar may still be forming and is dropped below.
        raw = await self._client.request(
            symbol, end - self._lookback, end, limit + 1, sort=Sort.DESC
        )
        rows = raw.get(symbol, []) if isinstance(raw, Mapping) else []
        bars = []
        for row in rows if isinstance(rows, list) else []:
            try:
                bar = bar_from_json(symbol, row)
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("skipping a malformed %s history bar: %s", symbol, exc)
                continue
            if bar.ts + MINUTE <= end:
                bars.append(bar)
        bars.sort(key=lambda b: b.ts)
        return bars[-limit:]

    def close(self) -> None:
        self._client.close()
