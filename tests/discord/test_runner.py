"""run_discord: startup failures a trader can fix become one line and exit code 2, and the
engine and journal are closed on every way out. No network: the start function is injected."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.bot import TradingBot
from bot.runner import INTENT_MISSING, NO_TOKEN, TOKEN_REJECTED, UNREACHABLE, run_discord
from config import Settings
from engine.app import EngineApp, build_app
from engine.clock import SystemClock
from engine.store.journal import Journal
from tests.support.app import sim_settings

TOKEN = "fake-token-for-tests"


def settings(tmp_path: Path) -> Settings:
    return sim_settings(tmp_path, discord={"token": TOKEN, "guild_id": 710000000000000001})


class Built:
    """Builds the real app and keeps it, so the test can look at it afterwards."""

    def __init__(self) -> None:
        self.app: EngineApp | None = None

    async def __call__(self, s: Settings) -> EngineApp:
        self.app = await build_app(s)
        return self.app

    def journal_closed(self) -> bool:
        assert self.app is not None, "the app was never built"
        return journal_closed(self.app)


class Recorder:
    """A service that notes when it starts and stops, and whether the engine ran then."""

    def __init__(self, name: str, log: list[str], app: EngineApp) -> None:
        self.name, self._log, self._app = name, log, app

    async def start(self) -> None:
        self._log.append(f"{self.name} start, engine {self._engine()}")

    async def stop(self) -> None:
        self._log.append(f"{self.name} stop, engine {self._engine()}")

    def _engine(self) -> str:
        if self._app.engine.started_mono is None:
            return "not started"
        return "running" if self._app.journal.path.exists() and _open(self._app) else "stopped"


def _open(app: EngineApp) -> bool:
    try:
        app.journal.append_event("probe", {}, datetime.now(UTC))
    except RuntimeError:
        return False
    return True


def journal_closed(app: EngineApp) -> bool:
    return not _open(app)


async def clean_shutdown_flag(s: Settings) -> str | None:
    journal = await Journal.open(s.storage.db_path, SystemClock())
    try:
        return await journal.get_meta("clean_shutdown")
    finally:
        await journal.close()


def no_wiring(app: EngineApp, bot: TradingBot) -> None:
    return None


async def run(s: Settings, start: Any, built: Built, err: io.StringIO, **kwargs: Any) -> int:
    kwargs.setdefault("wire", no_wiring)
    return await run_discord(
        s, start=start, build=built, stderr=err, handle_signals=False, **kwargs
    )


async def test_run_discord_when_token_rejected_then_one_line_exit_2_and_journal_closed(
    tmp_path: Path,
) -> None:
    s, built, err = settings(tmp_path), Built(), io.StringIO()

    async def login_refused(bot: TradingBot, token: str) -> None:
        assert token == TOKEN
        raise discord.LoginFailure("Improper token has been passed.")

    code = await run(s, login_refused, built, err)

    assert code == 2
    assert err.getvalue() == TOKEN_REJECTED + "\n"
    assert "Developer Portal > Bot > Reset Token" in TOKEN_REJECTED
    assert built.journal_closed()
    # The engine never started: its journal must not claim a clean shutdown.
    assert await clean_shutdown_flag(s) is None


async def test_run_discord_when_intent_not_enabled_then_one_line_exit_2(tmp_path: Path) -> None:
    s, built, err = settings(tmp_path), Built(), io.StringIO()

    async def intents_refused(bot: TradingBot, token: str) -> None:
        raise discord.PrivilegedIntentsRequired(shard_id=None)

    code = await run(s, intents_refused, built, err)

    assert code == 2
    assert err.getvalue() == INTENT_MISSING + "\n"
    assert "MESSAGE CONTENT INTENT" in INTENT_MISSING
    assert built.journal_closed()


class ClosedSocket:
    close_code = 4014


async def test_run_discord_when_gateway_closes_4014_after_setup_then_exit_2_everything_stopped(
    tmp_path: Path,
) -> None:
    s, built, err, log = settings(tmp_path), Built(), io.StringIO(), []

    def wire(app: EngineApp, bot: TradingBot) -> None:
        bot.add_service(Recorder("router", log, app), before_engine=True)
        bot.add_service(Recorder("jobs", log, app))

    async def refused_after_login(bot: TradingBot, token: str) -> None:
        await bot.setup_hook()  # login() runs it before the gateway connects
        raise discord.ConnectionClosed(ClosedSocket(), shard_id=None)  # type: ignore[arg-type]

    code = await run(s, refused_after_login, built, err, wire=wire)

    assert code == 2
    assert err.getvalue() == INTENT_MISSING + "\n"
    assert log == [
        "router start, engine not started",
        "jobs start, engine running",
        "jobs stop, engine running",
        "router stop, engine stopped",
    ]
    assert built.journal_closed()
    assert await clean_shutdown_flag(s) == "true"


async def test_run_discord_when_network_down_then_one_line_exit_1(tmp_path: Path) -> None:
    s, built, err = settings(tmp_path), Built(), io.StringIO()

    async def no_network(bot: TradingBot, token: str) -> None:
        raise OSError("Name or service not known")

    code = await run(s, no_network, built, err)

    assert code == 1
    assert err.getvalue() == UNREACHABLE.format(error="OSError: Name or service not known") + "\n"
    assert built.journal_closed()


async def test_run_discord_when_bot_closed_normally_then_exit_0_and_clean_shutdown(
    tmp_path: Path,
) -> None:
    s, built, err = settings(tmp_path), Built(), io.StringIO()

    async def run_then_close(bot: TradingBot, token: str) -> None:
        await bot.setup_hook()
        assert bot.app.engine.ready.is_set()
        assert {"status", "halt", "flatten", "help"} <= {c.name for c in bot.commands}
        bot.dispatch("connect")  # the gateway's READY, so the alert router can deliver
        await bot.close()

    # The default wiring: the real alert router and scheduled jobs.
    code = await run_discord(s, start=run_then_close, build=built, stderr=err, handle_signals=False)

    assert code == 0
    assert err.getvalue() == ""
    assert built.journal_closed()
    assert await clean_shutdown_flag(s) == "true"


async def test_run_discord_when_journal_holds_another_mode_then_cannot_start_exit_2(
    tmp_path: Path,
) -> None:
    s, built, err = settings(tmp_path), Built(), io.StringIO()
    journal = await Journal.open(s.storage.db_path, SystemClock())
    await journal.set_meta("owner_mode", "paper")  # a paper run's journal in this data dir
    await journal.close()

    async def login(bot: TradingBot, token: str) -> None:
        await bot.setup_hook()  # what discord.py's login does: starts the engine

    code = await run(s, login, built, err)

    assert code == 2
    (line,) = err.getvalue().splitlines()
    assert line.startswith(f"Cannot start: the journal in {s.storage.data_dir} holds paper")
    assert built.journal_closed()


async def test_run_discord_when_no_token_then_exit_2_without_building(tmp_path: Path) -> None:
    s = sim_settings(tmp_path)
    built, err = Built(), io.StringIO()

    code = await run_discord(s, build=built, stderr=err, handle_signals=False)

    assert code == 2
    assert err.getvalue() == NO_TOKEN + "\n"
    assert built.app is None


async def test_run_discord_when_app_cannot_be_built_then_one_line_exit_1(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text("timestamp,symbol,open\n")
    s = sim_settings(tmp_path, discord={"token": "not-used"}, sim={"replay_csv": bars})
    err = io.StringIO()

    code = await run_discord(s, stderr=err, handle_signals=False)

    assert code == 1
    assert err.getvalue().startswith("Cannot start: ")
    assert "bars.csv" in err.getvalue()
    assert err.getvalue().count("\n") == 1


@pytest.mark.parametrize("failure", [RuntimeError("boom"), ValueError("bad")])
async def test_run_discord_when_unexpected_failure_then_exit_1_and_closed(
    tmp_path: Path, failure: Exception
) -> None:
    s, built, err = settings(tmp_path), Built(), io.StringIO()

    async def broken(bot: TradingBot, token: str) -> None:
        await bot.setup_hook()
        raise failure

    code = await run(s, broken, built, err)

    assert code == 1
    assert len(err.getvalue().splitlines()) == 1
    assert type(failure).__name__ in err.getvalue()
    assert built.journal_closed()
