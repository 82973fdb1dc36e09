"""Errors become short helpful replies, never tracebacks; progress edits are throttled."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from discord.ext import commands

from bot.bot import UNEXPECTED, unwrap
from bot.checks import CONTROL_OFF
from cogs.control import ProgressMessage
from engine.clock import TestClock
from engine.commands import CommandService, StatusReport
from tests.discord.conftest import DEFAULT_DISCORD, Harness, open_harness


async def test_unknown_command_when_allowed_user_then_pointed_to_help(harness: Harness) -> None:
    with pytest.raises(commands.CommandNotFound):
        await harness.say("!stauts", member=harness.reader)

    assert harness.last_text() == "Unknown command `!stauts`. Try `!help`."


async def test_unknown_command_when_stranger_or_other_channel_then_silence(
    harness: Harness,
) -> None:
    with pytest.raises(commands.CommandNotFound):
        await harness.say("!stauts", member=harness.stranger)
    with pytest.raises(commands.CommandNotFound):
        await harness.say("!play music", channel=harness.other)  # meant for another bot

    assert harness.sent() == []


class BrokenStatus(CommandService):
    async def status(self, actor: str) -> StatusReport:
        raise RuntimeError("database on fire at /secret/path")


async def test_command_when_unexpected_error_then_short_reply_and_logged_with_context(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.app.commands = BrokenStatus(harness.app.engine)

    with (
        caplog.at_level(logging.ERROR, logger="bot.bot"),
        pytest.raises(commands.CommandInvokeError),
    ):
        await harness.say("!status")

    reply = harness.last_text()
    assert reply == UNEXPECTED
    assert "secret" not in reply
    assert "Traceback" not in reply
    (record,) = [r for r in caplog.records if r.name == "bot.bot"]
    assert f"user {harness.controller.id}" in record.getMessage()
    assert f"channel {harness.commands.id}" in record.getMessage()
    assert "status" in record.getMessage()
    assert record.exc_info is not None


def test_unwrap_when_nested_invoke_errors_then_original() -> None:
    original = ValueError("x")
    wrapped = commands.HybridCommandError(commands.CommandInvokeError(original))  # type: ignore[arg-type]

    assert unwrap(wrapped) is original


class FakeMessage:
    """Stands in for a discord.Message: records edits."""

    def __init__(self) -> None:
        self.edits: list[str] = []

    async def edit(self, *, content: str) -> FakeMessage:
        self.edits.append(content)
        return self


async def test_progress_message_when_updates_arrive_fast_then_throttled_and_final_shown() -> None:
    clock = TestClock(datetime(2026, 11, 20, tzinfo=UTC))
    message = FakeMessage()
    progress = ProgressMessage(message, clock, interval_s=1.0)  # type: ignore[arg-type]

    await progress.update("0 of 3")
    await progress.update("1 of 3")  # same instant: held back
    clock.advance(1.0)
    await progress.update("2 of 3")  # a second later: shown
    await progress.update("3 of 3")  # held back, then superseded by the final state
    await progress.finish("Flat in 1.0 s")
    await progress.update("late")  # after the end: ignored

    assert message.edits == ["0 of 3", "2 of 3", "Flat in 1.0 s"]


async def test_setup_problems_when_everything_visible_then_none(harness: Harness) -> None:
    assert harness.bot.setup_problems() == []


async def test_setup_problems_when_ids_unknown_then_each_named_by_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = {
        **DEFAULT_DISCORD,
        "guild_id": 720000000000000001,
        "command_channel_ids": [720000000000000002],
        "control_user_ids": [],
        "control_role_ids": [],
    }
    channels = {"reports_id": 720000000000000003}
    async with open_harness(tmp_path, discord_settings=wrong, channels=channels) as h:
        problems = h.bot.setup_problems()

    assert problems == [
        "DISCORD_GUILD_ID 720000000000000001: the bot is not in this server "
        "(invite it: docs/discord.md)",
        "DISCORD_COMMAND_CHANNEL_IDS 720000000000000002: no such channel is visible to the bot",
        "CHANNEL_REPORTS_ID 720000000000000003: no such channel is visible to the bot",
        CONTROL_OFF,
    ]
