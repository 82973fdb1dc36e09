"""The web server's lifetime in the two transports: the Discord bot (as a service of the
bot, started after the engine) and the console (so it can be tried with no Discord token)."""

from __future__ import annotations

import io
import logging
import re
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.bot import TradingBot
from bot.runner import run_discord
from engine.app import EngineApp, build_app
from tests.discord.test_runner import journal_closed
from tests.support.app import truncated_sample_csv
from tests.support.console_proc import ConsoleProcess
from tests.web.conftest import AUTH, TOKEN, web_settings

URL = re.compile(r"web page on (http://\S+/)")


async def get_json(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers) as response,
    ):
        return response.status, await response.json()


async def refused(url: str) -> bool:
    try:
        await get_json(url, AUTH)
    except aiohttp.ClientConnectionError:
        return True
    return False


async def test_bot_when_web_enabled_then_served_while_running_and_closed_with_the_bot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = web_settings(tmp_path, discord={"token": "fake-token-for-tests"})
    seen: dict[str, tuple[int, Any]] = {}
    urls: list[str] = []

    async def run_then_close(bot: TradingBot, token: str) -> None:
        bot._ready.set()  # the gateway's READY: the alert router delivers (no 5 s drain)
        await bot.setup_hook()
        urls.extend(URL.findall(caplog.text))
        seen["status"] = await get_json(urls[0] + "api/status", AUTH)
        await bot.close()

    with caplog.at_level(logging.INFO, logger="bot.web.server"):
        code = await run_discord(
            settings,
            start=run_then_close,
            stderr=io.StringIO(),
            handle_signals=False,
        )

    assert code == 0
    status, body = seen["status"]
    assert len(urls) == 1
    assert status == 200
    assert body["state"] == "ACTIVE"
    assert await refused(urls[0] + "api/status")


async def test_bot_when_web_port_taken_then_one_line_cannot_start_and_exit_1(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = web_settings(tmp_path, {"port": port}, discord={"token": "fake-token-for-tests"})
        built: list[EngineApp] = []
        err = io.StringIO()

        async def build(s: object) -> EngineApp:
            app = await build_app(settings)
            built.append(app)
            return app

        async def start(bot: TradingBot, token: str) -> None:
            bot._ready.set()
            await bot.setup_hook()

        code = await run_discord(
            settings, start=start, build=build, stderr=err, handle_signals=False
        )

    assert code == 1
    (line,) = err.getvalue().splitlines()
    assert line.startswith(f"Cannot start: the web server cannot listen on 127.0.0.1:{port}")
    assert "WEB_PORT" in line
    assert journal_closed(built[0])


@pytest.mark.slow
async def test_console_when_web_enabled_without_token_then_token_file_opens_the_api(
    tmp_path: Path,
) -> None:
    env = {
        "SIM_REPLAY_SPEED": "max",
        "SIM_REPLAY_CSV": str(truncated_sample_csv(tmp_path)),
        "WEB_ENABLED": "true",
        "WEB_PORT": "0",
    }
    console = await ConsoleProcess.start(tmp_path / "data", env)
    try:
        line = await console.read_until(lambda s: s.startswith("Web page: "))
        url = line.split()[2]
        token_file = tmp_path / "data" / "web-token"
        assert line.endswith(f"(token: {token_file})")
        token = token_file.read_text().strip()
        assert token not in "\n".join(console.lines)

        status, body = await get_json(url + "api/status", {"Authorization": f"Bearer {token}"})
        wrong, _ = await get_json(url + "api/status", AUTH)

        assert status == 200
        assert body["mode"] == "sim"
        assert wrong == 401
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        await console.send("!quit")
        code, _, stderr = await console.finish()
    finally:
        if console.proc.returncode is None:
            console.kill()
    assert code == 0, stderr
    assert await refused(url + "api/status")
    assert TOKEN not in stderr
