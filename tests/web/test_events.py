"""``/api/events``: the page's change notices over server-sent events."""

from __future__ import annotations

import asyncio
import json

from aiohttp import ClientResponse

from bot.web import WebServer
from bot.web.events import MAX_CLIENTS
from engine.app import EngineApp
from tests.support.app import seed_position
from tests.web.conftest import AUTH, Client


async def next_event(response: ClientResponse, within: float = 10.0) -> tuple[str, str]:
    """The next ``event:``/``data:`` pair (comments and retry lines skipped)."""
    name, data = "", ""
    async with asyncio.timeout(within):
        while True:
            raw = await response.content.readline()
            if not raw:
                raise AssertionError("the stream ended")
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif not line and name:
                return name, data


async def test_events_when_a_fill_happens_then_changes_name_order_and_fill_without_data(
    client: Client, sim_app: EngineApp
) -> None:
    async with client.get("/api/events", headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await next_event(response) == ("hello", "{}")

        await seed_position(sim_app, "MSFT", 3)
        seen: list[tuple[str, str]] = []
        while not any("fill" in json.loads(data)["kinds"] for _, data in seen):
            seen.append(await next_event(response))

    assert {name for name, _ in seen} == {"change"}
    kinds = {kind for _, data in seen for kind in json.loads(data)["kinds"]}
    assert kinds == {"fill", "order"}
    assert all("MSFT" not in data for _, data in seen)  # notices: data comes from the API


async def test_events_when_server_stops_then_open_streams_end(
    client: Client, sim_web: tuple[EngineApp, WebServer]
) -> None:
    async with client.get("/api/events", headers=AUTH) as response:
        await next_event(response)

        await sim_web[1].stop()

        async with asyncio.timeout(5):
            assert await response.content.read() == b""


async def test_events_when_too_many_streams_then_503_and_the_others_live_on(
    client: Client, sim_app: EngineApp
) -> None:
    streams = [await client.get("/api/events", headers=AUTH) for _ in range(MAX_CLIENTS)]
    try:
        for stream in streams:
            await next_event(stream)
        extra = await client.get("/api/events", headers=AUTH)

        assert extra.status == 503
        assert "at most" in (await extra.json())["error"]
        await seed_position(sim_app, "AAPL", 0)
        assert (await next_event(streams[-1]))[0] == "change"
    finally:
        for stream in streams:
            stream.close()
