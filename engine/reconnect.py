"""The one WebSocket reconnect loop: connect, handshake, serve until the connection ends,
wait (``engine.backoff``) and connect again, until cancelled.

What differs between streams is passed in: the handshake, what to do with an open
connection, which of the stream's own exceptions mean "refused, retry later" (and after how
long), and what to tell when the link comes up or goes down. The trade-update stream
(``engine.broker.alpaca.trade_stream``) and the market-data feed
(``engine.feed.alpaca_data``) both run on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from engine.backoff import Backoff
from engine.clock import Clock

Sleep = Callable[[float], Awaitable[None]]
Refusal = Callable[[Exception], tuple[str, float | None] | None]
"""A stream's own exception -> (why, wait or None for the usual backoff); None: not its own."""


@dataclass(frozen=True, slots=True)
class Link:
    """Where to connect and how patiently."""

    url: str
    open_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    stable_after_s: float = 30.0
    """A connection up this long resets the backoff."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Why a connection (or an attempt) ended, and what happens next."""

    reason: str
    delay_s: float
    """The wait before the next attempt."""
    was_up: bool
    """The handshake had completed."""
    cut: bool
    """The transport failed (refused, reset, timed out): no reply from the other side."""
    refused: bool
    """The stream's own refusal decided the wait (``Refusal``)."""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def keep_connected(
    link: Link,
    *,
    clock: Clock,
    backoff: Backoff,
    handshake: Callable[[ClientConnection], Awaitable[None]],
    serve: Callable[[ClientConnection], Awaitable[None]],
    on_up: Callable[[], None],
    on_down: Callable[[Drop], None],
    refusal: Refusal | None = None,
    sleep: Sleep = asyncio.sleep,
) -> NoReturn:
    """Run until cancelled. ``serve`` reads the open connection until it ends; an
    exception from the handshake or ``serve`` that ``refusal`` does not claim propagates."""
    while True:
        up_mono: float | None = None
        delay: float | None = None
        cut = False
        try:
            async with connect(
                link.url,
                open_timeout=link.open_timeout_s,
                ping_interval=link.ping_interval_s,
                ping_timeout=link.ping_timeout_s,
                close_timeout=2,
            ) as ws:
                await handshake(ws)
                up_mono = clock.monotonic()
                on_up()
                await serve(ws)
            reason = "closed by the server"
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, WebSocketException) as exc:
            reason, cut = describe(exc), True
        except Exception as exc:
            claimed = refusal(exc) if refusal is not None else None
            if claimed is None:
                raise
            reason, delay = claimed
        if up_mono is not None and clock.monotonic() - up_mono >= link.stable_after_s:
            backoff.reset()
        refused = delay is not None
        wait = delay if delay is not None else backoff.next()
        on_down(
            Drop(reason=reason, delay_s=wait, was_up=up_mono is not None, cut=cut, refused=refused)
        )
        await sleep(wait)
