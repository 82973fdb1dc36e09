"""Historical bars over REST: ``/v2/stocks/bars`` and ``/v2/stocks/{symbol}/bars``
(market-data-api.openapi.json). Only minute bars exist here; errors answer 400."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time

from aiohttp import web

from engine.clock import NEW_YORK, trading_day
from engine.domain import Bar
from tests.fakes.alpaca.bars import BadPageToken, BarStore
from tests.fakes.alpaca.json_models import bar_body
from tests.fakes.alpaca.rest import choice, integer, reply, timestamp, unprocessable

MINUTE_TIMEFRAMES = ("1min", "1t")
FEEDS = ("iex", "sip", "otc", "boats", "delayed_sip", "overnight")


class MarketDataApi:
    def __init__(self, bars: BarStore, now: Callable[[], datetime]) -> None:
        self._bars = bars
        self._now = now

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v2/stocks/bars", self.multi),
            web.get("/v2/stocks/{symbol}/bars", self.single),
        ]

    async def multi(self, request: web.Request) -> web.Response:
        raw = request.query.get("symbols", "")
        symbols = [s.strip().upper() for s in raw.split(",") if s.strip()]
        if not symbols:
            raise unprocessable("missing symbols", 400)
        found, token = self._query(request, symbols)
        bars = {symbol: [bar_body(b) for b in page] for symbol, page in found.items()}
        return reply({"bars": bars, "next_page_token": token})

    async def single(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"].upper()
        found, token = self._query(request, [symbol])
        bars = [bar_body(b) for b in found.get(symbol, [])]
        return reply({"bars": bars, "symbol": symbol, "next_page_token": token})

    def _query(
        self, request: web.Request, symbols: list[str]
    ) -> tuple[dict[str, list[Bar]], str | None]:
        """``start`` defaults to the start of today in New York and ``end`` to now, as on
        Alpaca with real-time access; both are inclusive."""
        query = request.query
        frame = query.get("timeframe", "")
        if frame.lower() not in MINUTE_TIMEFRAMES:
            raise unprocessable(f"invalid timeframe {frame!r}: the fake serves 1Min bars", 400)
        choice(query.get("feed"), "feed", FEEDS, "iex", status=400)
        descending = choice(query.get("sort"), "sort", ("asc", "desc"), "asc", status=400)
        now = self._now()
        midnight = datetime.combine(trading_day(now), time(0), tzinfo=NEW_YORK).astimezone(UTC)
        start = timestamp(query.get("start"), "start", status=400) or midnight
        end = timestamp(query.get("end"), "end", status=400) or now
        limit = integer(query.get("limit"), "limit", default=1000, low=1, high=10_000, status=400)
        try:
            return self._bars.query(
                symbols,
                start,
                end,
                limit,
                descending=descending == "desc",
                page_token=query.get("page_token") or None,
            )
        except BadPageToken as exc:
            raise unprocessable(str(exc), 400) from None
