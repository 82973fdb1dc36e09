"""``/api/events``: server-sent events telling the page that something changed (a fill, an
order update, a trading-state change), so it fetches again at once instead of polling fast.

The events carry only the kinds of change, never data: the page reads the data through the
API. Each client's pending kinds are merged until it is written to, so a burst of fills is one
message and a slow client costs a set of strings, not a growing queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from aiohttp import web

from bot.web.api import error_response
from engine.bus import EventBus
from engine.events import Event, FillReceived, OrderUpdated, TradingStateChanged

KEEPALIVE_S = 15.0
MAX_CLIENTS = 16

_KINDS: tuple[tuple[type[Event], str], ...] = (
    (FillReceived, "fill"),
    (OrderUpdated, "order"),
    (TradingStateChanged, "state"),
)


class _Client:
    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.wake = asyncio.Event()


class ChangeStream:
    def __init__(self, bus: EventBus, keepalive_s: float = KEEPALIVE_S) -> None:
        self._keepalive_s = keepalive_s
        self._clients: set[_Client] = set()
        self._closed = False
        self._unsubscribe: list[Callable[[], None]] = [
            bus.subscribe(event_type, self._notify(kind)) for event_type, kind in _KINDS
        ]

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def clients(self) -> int:
        return len(self._clients)

    def _notify(self, kind: str) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            for client in self._clients:
                client.pending.add(kind)
                client.wake.set()

        return on_event

    def close(self) -> None:
        """End every open stream (server shutdown) and stop listening to the bus."""
        self._closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for client in self._clients:
            client.wake.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._closed:
            return error_response(503, "shutting down")
        if len(self._clients) >= MAX_CLIENTS:
            return error_response(503, f"at most {MAX_CLIENTS} open event streams at once")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        client = _Client()
        self._clients.add(client)
        try:
            await response.prepare(request)
            await response.write(b"retry: 3000\nevent: hello\ndata: {}\n\n")
            while True:
                with contextlib.suppress(TimeoutError):  # (not wait_for: see bot/alerts.py)
                    async with asyncio.timeout(self._keepalive_s):
                        await client.wake.wait()
                if self.closed:
                    break
                if not client.wake.is_set():
                    await response.write(b": keep-alive\n\n")
                    continue
                client.wake.clear()
                kinds, client.pending = sorted(client.pending), set()
                data = json.dumps({"kinds": kinds})
                await response.write(f"event: change\ndata: {data}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self._clients.discard(client)
        return response
