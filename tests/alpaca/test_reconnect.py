"""The one WebSocket reconnect loop, against a real local server that hangs up."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection

from engine.backoff import Backoff
from engine.clock import SystemClock
from engine.reconnect import Drop, Link, keep_connected


class Refused(Exception):
    pass


class Unexpected(Exception):
    pass


@pytest.fixture
async def hangs_up() -> AsyncIterator[str]:
    """A server that says hello and closes every connection."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello")
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
    await runner.cleanup()


async def test_keep_connected_when_server_hangs_up_then_reconnects_and_refusals_set_the_wait(
    hangs_up: str,
) -> None:
    events: list[str | Drop] = []
    frames: list[str | bytes] = []
    attempts = 0

    async def handshake(ws: ClientConnection) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            raise Refused("not now")
        frames.append(await ws.recv())

    async def serve(ws: ClientConnection) -> None:
        async for frame in ws:
            frames.append(frame)

    def on_down(drop: Drop) -> None:
        events.append(drop)
        if len(events) >= 5:
            raise Unexpected("enough")  # ends the loop for the test

    def refusal(exc: Exception) -> tuple[str, float | None] | None:
        return ("refused: not now", 0.01) if isinstance(exc, Refused) else None

    with pytest.raises(Unexpected):
        await asyncio.wait_for(
            keep_connected(
                Link(hangs_up),
                clock=SystemClock(),
                backoff=Backoff(base_s=0.01, cap_s=0.02),
                handshake=handshake,
                serve=serve,
                on_up=lambda: events.append("up"),
                on_down=on_down,
                refusal=refusal,
            ),
            10,
        )

    drops = [e for e in events if isinstance(e, Drop)]
    assert events[0] == "up"
    assert (drops[0].reason, drops[0].was_up, drops[0].cut) == ("closed by the server", True, False)
    assert (drops[1].reason, drops[1].refused, drops[1].delay_s) == ("refused: not now", True, 0.01)
    assert drops[1].was_up is False
    assert frames[:1] == ["hello"]


async def test_keep_connected_when_nothing_listens_then_cut_and_backoff_grows() -> None:
    delays: list[float] = []

    def on_down(drop: Drop) -> None:
        assert drop.cut
        delays.append(drop.delay_s)
        if len(delays) == 3:
            raise Unexpected("enough")

    async def nothing(ws: ClientConnection) -> None:
        return None

    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Unexpected):
        await keep_connected(
            Link(f"ws://127.0.0.1:{port}/ws", open_timeout_s=1),
            clock=SystemClock(),
            backoff=Backoff(base_s=0.01, cap_s=1.0, jitter=0.0),
            handshake=nothing,
            serve=nothing,
            on_up=lambda: None,
            on_down=on_down,
        )

    assert delays == [0.01, 0.02, 0.04]
