"""The JSON API: one route per read call of the command service, nothing else.

Every call goes through ``CommandService`` as actor ``web``, unaudited: the page polls these
reads (six per refresh), which would bury the trader's commands in ``!audit``. Query
parameters are checked here: an unknown, repeated or malformed one is a 400 naming it, and
the command is not run.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import date

from aiohttp import web

from bot.web.encode import JSONValue, dumps, plain
from engine.commands import (
    DEFAULT_AUDIT_ROWS,
    MAX_AUDIT_ROWS,
    MAX_EQUITY_DAYS,
    CommandService,
    PnLReport,
)

ACTOR = "web"
"""Who reads, for the command service. Reads are not audited (see the module docstring)."""

DEFAULT_EQUITY_DAYS = 1
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadQuery(Exception):
    """A query parameter the route does not take or cannot parse: the message says which."""


def query(request: web.Request, *takes: str) -> None:
    """Refuse a parameter the route does not take, or one given twice."""
    for name in request.query:
        if name not in takes:
            listed = ", ".join(takes) or "no parameters"
            raise BadQuery(f"unknown query parameter {name!r}; {request.path} takes {listed}")
        if len(request.query.getall(name)) > 1:
            raise BadQuery(f"{name} is given more than once")


def int_param(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise BadQuery(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def day_param(request: web.Request, name: str) -> date | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        if not _DAY.fullmatch(text.strip()):
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadQuery(f"{name} must be a date as YYYY-MM-DD, for example 2026-11-20") from None


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
        query(request)
        return json_response(plain(await commands.status(ACTOR, audit=False)))

    async def positions(request: web.Request) -> web.StreamResponse:
        query(request)
        return json_response(plain(await commands.positions(ACTOR, audit=False)))

    async def orders(request: web.Request) -> web.StreamResponse:
        query(request)
        return json_response(plain(await commands.orders(ACTOR, audit=False)))

    async def pnl(request: web.Request) -> web.StreamResponse:
        query(request)
        return json_response(_pnl(await commands.pnl(ACTOR, audit=False)))

    async def trades(request: web.Request) -> web.StreamResponse:
        query(request, "day")
        day = day_param(request, "day")
        trades = await commands.trades(ACTOR, day, audit=False)
        return json_response(plain(sorted(trades, key=lambda t: t.ts, reverse=True)))

    async def equity(request: web.Request) -> web.StreamResponse:
        query(request, "days")
        days = int_param(request, "days", default=DEFAULT_EQUITY_DAYS, low=1, high=MAX_EQUITY_DAYS)
        return json_response(plain(await commands.equity(ACTOR, days, audit=False)))

    async def audit(request: web.Request) -> web.StreamResponse:
        query(request, "limit")
        limit = int_param(request, "limit", default=DEFAULT_AUDIT_ROWS, low=1, high=MAX_AUDIT_ROWS)
        return json_response(plain(await commands.audit(ACTOR, limit, audit=False)))

    return {
        "/api/status": status,
        "/api/positions": positions,
        "/api/orders": orders,
        "/api/pnl": pnl,
        "/api/trades": trades,
        "/api/equity": equity,
        "/api/audit": audit,
    }
