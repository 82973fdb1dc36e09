"""A real engine on the simulator with the web server in front of it, through aiohttp's
test client (a real HTTP server on a free loopback port)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.web import WebServer
from config import Settings
from engine.app import EngineApp, build_app
from tests.support.app import sim_settings, wait_for

TOKEN = "test-web-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Client = TestClient[web.Request, web.Application]


def web_settings(tmp_path: Path, web: dict[str, Any] | None = None, **overrides: Any) -> Settings:
    """Simulator settings with the web server on (a known token, any free port)."""
    section: dict[str, Any] = {"enabled": True, "token": TOKEN, "port": 0}
    section.update(web or {})
    return sim_settings(tmp_path, web=section, **overrides)


async def start_with_web(settings: Settings) -> tuple[EngineApp, WebServer]:
    """As the bot wires it: the server is built before the engine starts (its counters see
    start-up), then the replayed morning runs to its end."""
    app = await build_app(settings)
    server = WebServer(app)
    await app.start()
    await wait_for(lambda: app.feed.health.finished, within=60)
    await app.engine.settle()
    return app, server


@pytest.fixture
async def sim_web(tmp_path: Path) -> AsyncIterator[tuple[EngineApp, WebServer]]:
    app, server = await start_with_web(web_settings(tmp_path))
    try:
        yield app, server
    finally:
        await server.stop()
        await app.stop()


@pytest.fixture
def sim_app(sim_web: tuple[EngineApp, WebServer]) -> EngineApp:
    return sim_web[0]


@pytest.fixture
async def client(sim_web: tuple[EngineApp, WebServer]) -> AsyncIterator[Client]:
    async with TestClient(TestServer(await sim_web[1].make_app())) as test_client:
        yield test_client
