"""``GET /v2/account/activities`` over a ``SimExchange``: FILL activities, paged as Alpaca
pages them (trading-api.openapi.json)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from engine.clock import trading_day
from engine.sim.exchange import SimExchange
from tests.fakes.alpaca.json_models import activity_json
from tests.fakes.alpaca.rest import choice, integer, reply, timestamp, unprocessable

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DIRECTIONS = ("asc", "desc")


class ActivitiesApi:
    def __init__(self, *, exchange: SimExchange, account: str) -> None:
        self._exchange = exchange
        self._account = account

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v2/account/activities", self.activities),
            web.get("/v2/account/activities/{activity_type}", self.activities_of_type),
        ]

    async def activities(self, request: web.Request) -> web.Response:
        raw = request.query.get("activity_types", "")
        types = {t.strip().upper() for t in raw.split(",") if t.strip()}
        category = request.query.get("category")
        wanted = (not types and category != "non_trade_activity") or "FILL" in types
        return self._fills(request) if wanted else reply([])

    async def activities_of_type(self, request: web.Request) -> web.Response:
        wanted = request.match_info["activity_type"].upper() == "FILL"
        return self._fills(request) if wanted else reply([])

    def _fills(self, request: web.Request) -> web.Response:
        """FILL activities, newest first unless ``direction=asc``; ``after`` and ``until``
        are exclusive; ``page_token`` is the id of the last activity of the previous page."""
        query = request.query
        after = timestamp(query.get("after"), "after")
        until = timestamp(query.get("until"), "until")
        on_day = timestamp(query.get("date"), "date")
        direction = choice(query.get("direction"), "direction", DIRECTIONS, "desc")
        page_size = integer(query.get("page_size"), "page_size", default=100, low=1, high=100)
        executions = [
            (e.transaction_time, seq, e)
            for seq, e in enumerate(self._exchange.executions_since(EPOCH))
            if (after is None or e.transaction_time > after)
            and (until is None or e.transaction_time < until)
            and (on_day is None or trading_day(e.transaction_time) == trading_day(on_day))
        ]
        executions.sort(key=lambda item: (item[0], item[1]), reverse=direction == "desc")
        ordered = [e for _, _, e in executions]
        begin = 0
        token = query.get("page_token")
        if token:
            ids = [e.id for e in ordered]
            if token not in ids:
                raise unprocessable("invalid page_token")
            begin = ids.index(token) + 1
        page = ordered[begin : begin + page_size]
        return reply([activity_json(e, account=self._account) for e in page])
