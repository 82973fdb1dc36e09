"""The JSON API: one route per read call of the command service, nothing else.

Every call goes through ``CommandService`` (and so is audited, as actor ``web``). Query
parameters are checked here: an unknown, repeated or malformed one is a 400 naming it, and
the command is not run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from bot.web.encode import JSONValue, dumps, plain
from engine.commands import CommandService, PnLReport

ACTOR = "web"
"""Who the audit log says read: every API request is one audit row with this actor."""


class BadQuery(Exception):
    """A query parameter the route does not take or cannot parse: the message says which."""


@dataclass(frozen=True, slots=True)
class IntParam:
    default: int
    low: int
    high: int

    def parse(self, name: str, text: str) -> int:
        if not text.strip().isdigit():
            raise BadQuery(f"{name} must be a whole number from {self.low} to {self.high}")
        value = int(text)
        if not self.low <= value <= self.high:
            raise BadQuery(f"{name} must be from {self.low} to {self.high}")
        return value


def query(request: web.Request, allowed: Mapping[str, IntParam]) -> dict[str, int]:
    """The route's parameters, defaults filled in; ``BadQuery`` for anything else."""
    for name in request.query:
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) or "no parameters"
            raise BadQuery(f"unknown query parameter {name!r}; {request.path} takes {takes}")
        if len(request.query.getall(name)) > 1:
            raise BadQuery(f"{name} is given more than once")
    return {
        name: spec.parse(name, request.query[name]) if name in request.query else spec.default
        for name, spec in allowed.items()
    }


def json_response(payload: JSONValue, status: int = 200) -> web.Response:
    return web.Response(text=dumps(payload), status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


def _pnl(report: PnLReport) -> JSONValue:
    return {
        "summary": plain(report.summary),
        "curve": [{"ts": plain(ts), "equity": plain(equity)} for ts, equity in report.curve],
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(commands: CommandService) -> dict[str, Handler]:
    """Path -> GET handler for every API route."""

    async def status(request: web.Request) -> web.StreamResponse:
        query(request, {})
        return json_response(plain(await commands.status(ACTOR)))

    async def positions(request: web.Request) -> web.StreamResponse:
        query(request, {})
        return json_response(plain(await commands.positions(ACTOR)))

    async def orders(request: web.Request) -> web.StreamResponse:
        query(request, {})
        return json_response(plain(await commands.orders(ACTOR)))

    async def pnl(request: web.Request) -> web.StreamResponse:
        query(request, {})
        return json_response(_pnl(await commands.pnl(ACTOR)))

    return {
        "/api/status": status,
        "/api/positions": positions,
        "/api/orders": orders,
        "/api/pnl": pnl,
    }
