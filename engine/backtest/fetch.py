"""``run_bot.py fetch-bars``: minute bars from Alpaca's historical API into the history cache.

One symbol at a time, in pages of at most ``PAGE_LIMIT`` bars: each page is one request of
alpaca-py's ``StockHistoricalDataClient.get_stock_bars`` (its ``limit`` set to the page size,
so it makes exactly one HTTP request), from where the last page ended. Every request first
waits for the request budget (``engine.broker.resilience.RequestBudget``, the limit the
engine's broker keeps to); a failure Alpaca says is temporary is retried with backoff
(``RetryPolicy``), a 429 also pauses the budget for as long as Alpaca asks.

alpaca-py blocks, so each request runs on one worker thread with a socket timeout and an
``asyncio`` time limit (``engine.feed.alpaca_history.MinuteBarsClient``, which the warm-up
history asks through too). Each page is stored as soon as it arrives, whole or not at all
(``HistoryCache.store``); the spans still to fetch come from the cache
(``HistoryCache.missing``), so a download that was interrupted (killed, a network failure,
Ctrl-C) resumes where it stopped: a stored page is never asked for again, and nothing is
left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alpaca.common.enums import Sort
from alpaca.data.historical.stock import StockHistoricalDataClient

from engine.backtest.history import HistoryCache, Span
from engine.broker.resilience import RequestBudget, RetryPolicy, retry_call
from engine.domain import Bar
from engine.errors import BrokerError, RateLimited
from engine.feed.alpaca_history import MinuteBarsClient, bar_from_json

log = logging.getLogger(__name__)

PAGE_LIMIT = 10_000
"""Bars per request: Alpaca's largest page."""
MINUTE = timedelta(minutes=1)

PageCallback = Callable[[str, int, int], None]
"""Called after each stored page with the symbol, the page's bars and the symbol's total."""


@dataclass
class FetchReport:
    pages: int = 0
    """Pages fetched and stored by this run."""
    bars: dict[str, int] = field(default_factory=dict)
    """Bars stored by this run, per symbol."""
    complete: list[str] = field(default_factory=list)
    """Symbols the cache already held for the whole span."""


class BarsClient:
    """Pages of one symbol's minute bars, oldest first, each checked (``parse_page``)."""

    def __init__(
        self, factory: Callable[[], StockHistoricalDataClient], *, feed: str, timeout_s: float
    ) -> None:
        self._client = MinuteBarsClient(
            factory, feed=feed, timeout_s=timeout_s, thread_name="fetch-bars"
        )

    async def page(self, symbol: str, start: datetime, end: datetime, limit: int) -> list[Bar]:
        """Bars of ``symbol`` with ``start <= ts <= end``, oldest first, at most ``limit``."""
        raw = await self._client.request(symbol, start, end, limit, sort=Sort.ASC)
        return parse_page(symbol, raw, start, end)

    def close(self) -> None:
        self._client.close()


def parse_page(symbol: str, raw: object, start: datetime, end: datetime) -> list[Bar]:
    """The bars of one reply; ``BrokerError`` for anything that is not a clean page of this
    symbol's minute bars, in time order, inside the span asked for (nothing is stored)."""
    rows = raw.get(symbol, []) if isinstance(raw, Mapping) else None
    if not isinstance(rows, list):
        raise BrokerError(f"unexpected reply from Alpaca for {symbol}: no list of bars")
    bars: list[Bar] = []
    for i, row in enumerate(rows):
        try:
            bar = bar_from_json(symbol, row)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BrokerError(
                f"unexpected reply from Alpaca for {symbol}: bar {i}: {exc}"
            ) from None
        if not start <= bar.ts <= end or (bars and bar.ts <= bars[-1].ts):
            raise BrokerError(
                f"unexpected reply from Alpaca for {symbol}: bar {i} at {bar.ts.isoformat()} "
                "is out of order or outside the span asked for"
            )
        bars.append(bar)
    return bars


async def fetch_history(
    client: BarsClient,
    cache: HistoryCache,
    symbols: Sequence[str],
    span: Span,
    *,
    budget: RequestBudget,
    retry: RetryPolicy | None = None,
    page_limit: int = PAGE_LIMIT,
    on_page: PageCallback | None = None,
) -> FetchReport:
    """Fetch what the cache lacks of ``span`` for every symbol. Raises ``BrokerError`` when
    a page cannot be had (what was stored stays stored)."""
    report = FetchReport()
    policy = retry or RetryPolicy()
    for symbol in (s.upper() for s in symbols):
        cache.discard_partial(symbol)
        gaps = cache.missing(symbol, span)
        if not gaps:
            report.complete.append(symbol)
            continue
        report.bars.setdefault(symbol, 0)
        for gap_start, gap_end in gaps:
            cursor = gap_start
            while cursor <= gap_end:
                page = await _page(client, budget, policy, symbol, (cursor, gap_end), page_limit)
                # A short page is the end of the gap; a full one ends at its last bar.
                covered = gap_end if len(page) < page_limit else page[-1].ts
                cache.store(symbol, (cursor, covered), page)
                report.pages += 1
                report.bars[symbol] += len(page)
                if on_page is not None:
                    on_page(symbol, len(page), report.bars[symbol])
                cursor = covered + MINUTE
    return report


async def _page(
    client: BarsClient,
    budget: RequestBudget,
    policy: RetryPolicy,
    symbol: str,
    span: Span,
    limit: int,
) -> list[Bar]:
    """One page, each attempt within the budget; a 429 pauses the budget as Alpaca asks."""

    async def attempt(_: int) -> list[Bar]:
        await budget.acquire()
        try:
            return await client.page(symbol, span[0], span[1], limit)
        except RateLimited as exc:
            budget.defer(exc.retry_after or 1.0)
            raise

    return await retry_call(attempt, policy)
