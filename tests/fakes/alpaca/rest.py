"""What every REST request goes through: logging, faults, authentication, JSON errors."""

from __future__ import annotations

import asyncio
import json
import math
import time as wall
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from typing import Any

from aiohttp import web

from engine.clock import NEW_YORK
from engine.domain import parse_utc
from tests.fakes.alpaca.json_models import (
    BAD_REQUEST,
    INTERNAL,
    NOT_FOUND,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    UNPROCESSABLE,
    error,
)
from tests.fakes.alpaca.knobs import FaultPlan
from tests.fakes.alpaca.streams import Credentials

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Raised by handlers; becomes ``{"code": ..., "message": ...}`` with ``status``."""

    def __init__(self, status: int, code: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.body = error(code, message, **extra)


def unprocessable(message: str, status: int = 422) -> ApiError:
    """Alpaca's validation error: 422 on the trading API, 400 on market data."""
    return ApiError(status, UNPROCESSABLE, message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, BAD_REQUEST, message)


def reply(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def fault_middleware(
    *,
    check: Credentials,
    faults: FaultPlan,
    log: list[tuple[str, str]],
    stopping: asyncio.Event,
    stream_paths: frozenset[str],
) -> Any:
    """Order per request: log, latency, hang, 401, 429, injected 500, then the handler."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in stream_paths:
            return await handler(request)
        log.append((request.method, request.path))
        # Frozen (a SIGSTOPped process): accepted by the kernel, answered only after a thaw.
        if not faults.thawed.is_set():
            await _first(faults.until_thawed(), stopping.wait())
        knobs = faults.knobs
        if knobs.latency_ms > 0:
            await asyncio.sleep(knobs.latency_ms / 1000.0)
        if faults.take_hang(request.path):
            # Never answered; the client's timeout cancels us, or the server stopping ends it.
            await stopping.wait()
            return reply(error(INTERNAL, "server shutting down"), 503)
        if not check(
            request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY")
        ):
            return reply(error(UNAUTHORIZED, "request is not authorized"), 401)
        if (reset_in_s := faults.take_rate_limit()) is not None:
            limited = reply(error(TOO_MANY_REQUESTS, "rate limit exceeded"), 429)
            if knobs.send_retry_after:
                limited.headers["Retry-After"] = str(knobs.retry_after_s)
            return _with_budget(limited, faults, reset_in_s=reset_in_s)
        if faults.roll_error():
            return reply(error(INTERNAL, "internal server error"), 500)
        response: web.StreamResponse
        try:
            response = await handler(request)
        except ApiError as exc:
            response = reply(exc.body, exc.status)
        except web.HTTPException as exc:  # router misses: unknown path or method
            code = NOT_FOUND if exc.status == 404 else exc.status * 100_000
            response = reply(error(code, exc.reason.lower()), exc.status)
        return _with_budget(response, faults)

    return middleware


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _with_budget(
    response: web.StreamResponse, faults: FaultPlan, *, reset_in_s: float | None = None
) -> web.StreamResponse:
    """Alpaca's rate-limit headers; the reset is the Unix second the quota has room again."""
    wait = faults.reset_in_s() if reset_in_s is None else reset_in_s
    response.headers["X-RateLimit-Limit"] = str(faults.knobs.rate_limit_per_min or 200)
    response.headers["X-RateLimit-Remaining"] = str(faults.remaining())
    response.headers["X-RateLimit-Reset"] = str(math.ceil(wall.time() + wait))
    return response


# -- query parameters -------------------------------------------------------------------------


def flag(value: object, name: str, default: bool = False, *, status: int = 422) -> bool:
    """A boolean as Alpaca takes it; alpaca-py sends ``True``/``False``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise unprocessable(f"invalid {name}: {value!r}", status)


def timestamp(value: str | None, name: str, *, status: int = 422) -> datetime | None:
    """RFC-3339 (naive means UTC) or ``YYYY-MM-DD`` (midnight in New York)."""
    if value is None or not value.strip():
        return None
    # An unencoded "+" in a query string arrives as a space.
    text = value.strip().replace(" ", "+")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time(0), tzinfo=NEW_YORK).astimezone(UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parse_utc(parsed.isoformat())
    except ValueError:
        raise unprocessable(f"invalid {name}: {value!r}", status) from None


def integer(
    value: str | None, name: str, *, default: int, low: int, high: int, status: int = 422
) -> int:
    """An integer parameter; values above ``high`` are capped as Alpaca caps them."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise unprocessable(f"invalid {name}: {value!r}", status) from None
    if number < low:
        raise unprocessable(f"{name} must be >= {low}", status)
    return min(number, high)


def choice(
    value: str | None, name: str, options: tuple[str, ...], default: str, *, status: int = 422
) -> str:
    if value is None or value == "":
        return default
    if value.lower() not in options:
        raise unprocessable(f"invalid {name}: {value!r}", status)
    return value.lower()
