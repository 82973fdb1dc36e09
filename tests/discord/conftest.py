"""A real TradingBot on a real engine (simulator, SQLite), driven through dpytest.

dpytest fakes Discord's side: one server with a command channel, another channel, an alerts
channel, and people with and without rights. IDs are fixed so the settings can name them.
setup_hook never runs under dpytest (no login), so the harness calls it itself (see
docs/library-facts.md). Files the bot sends are written by dpytest as
./dpytest_N.dat: the harness runs in tmp_path so they go away with it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import discord
import discord.ext.test as dpytest
import discord.http
import pytest
from discord.ext import commands
from discord.ext.test import backend, runner

import bot.charts
from bot.bot import TradingBot, unwrap
from bot.discord_transport import DiscordTransport
from engine.app import EngineApp, build_app
from engine.clock import TestClock
from tests.support.app import sim_settings, wait_for

GUILD_ID = 710000000000000001
COMMANDS_ID = 710000000000000010
OTHER_ID = 710000000000000011
ALERTS_ID = 710000000000000012
TRADES_ID = 710000000000000013
CONTROL_ROLE_ID = 710000000000000020
READ_ROLE_ID = 710000000000000021
CONTROLLER_ID = 710000000000000030
ROLE_CONTROLLER_ID = 710000000000000031
READER_ID = 710000000000000032
ROLE_READER_ID = 710000000000000033
STRANGER_ID = 710000000000000034

CLOCK_START = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)

DEFAULT_DISCORD: dict[str, Any] = {
    "guild_id": GUILD_ID,
    "command_channel_ids": [COMMANDS_ID],
    "control_user_ids": [CONTROLLER_ID],
    "control_role_ids": [CONTROL_ROLE_ID],
    "read_user_ids": [READER_ID],
    "read_role_ids": [READ_ROLE_ID],
    "confirm_timeout_s": 30,
    "dedupe_window_s": 5,
}
DEFAULT_CHANNELS: dict[str, Any] = {"system_alerts_id": ALERTS_ID, "trades_id": TRADES_ID}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Harness:
    bot: TradingBot
    app: EngineApp
    clock: TestClock
    guild: discord.Guild
    commands: discord.TextChannel
    other: discord.TextChannel
    alerts: discord.TextChannel
    controller: discord.Member
    role_controller: discord.Member
    reader: discord.Member
    role_reader: discord.Member
    stranger: discord.Member

    async def say(
        self,
        content: str,
        member: discord.Member | discord.User | None = None,
        channel: discord.abc.Messageable | None = None,
    ) -> discord.Message:
        """Post ``content`` as ``member`` (default: the control user) and wait for the bot."""
        return await dpytest.message(
            content,
            channel=channel or self.commands,  # type: ignore[arg-type]
            member=member or self.controller,  # type: ignore[arg-type]
        )

    def sent(self) -> list[discord.Message]:
        """Everything the bot sent since the last call, oldest first."""
        out = []
        while not runner.sent_queue.empty():
            out.append(runner.sent_queue.get_nowait())
        return out

    def last_text(self) -> str:
        messages = self.sent()
        assert messages, "the bot sent nothing"
        return message_text(messages[-1])

    async def dm_channel(self, member: discord.Member) -> discord.DMChannel:
        return await member.create_dm()


async def gateway(bot: TradingBot, event: str, transport: DiscordTransport) -> None:
    """Dispatch a gateway event as discord.py does (``connect`` after READY, ``resumed``,
    ``disconnect``; dpytest sends none of them) and wait until ``transport`` has seen it."""
    bot.dispatch(event)
    await wait_for(lambda: transport.is_ready() is (event != "disconnect"))


def code_in(message: discord.Message) -> str:
    """The confirmation code a preview asks for."""
    found = re.search(r"confirm ([A-Z2-9]{6})`", message_text(message))
    assert found, f"no confirmation code in {message_text(message)!r}"
    return found.group(1)


async def shown_now(message: discord.Message) -> discord.Message:
    """The message as Discord shows it now (after the bot's edits)."""
    return await message.channel.fetch_message(message.id)


@dataclass(frozen=True)
class Drawn:
    thread: int
    title: str


@pytest.fixture
def drawn_charts(monkeypatch: pytest.MonkeyPatch) -> list[Drawn]:
    """Every equity chart drawn from now on: the thread it was drawn on and its title."""
    drawn: list[Drawn] = []
    real = bot.charts.render_equity_curve

    def recording(curve: Sequence[tuple[datetime, Decimal]], title: str = "") -> bytes:
        drawn.append(Drawn(threading.get_ident(), title))
        return real(curve, title)

    monkeypatch.setattr(bot.charts, "render_equity_curve", recording)
    return drawn


async def refused(h: Harness, content: str, **kwargs: Any) -> BaseException:
    """Send a command the bot must refuse; return the underlying error."""
    with pytest.raises(commands.CommandError) as info:
        await h.say(content, **kwargs)
    return unwrap(info.value)


def message_text(message: discord.Message) -> str:
    """Content plus every embed's title, description, fields and footer."""
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.title or "", embed.description or ""]
        parts += [f"{f.name}: {f.value}" for f in embed.fields]
        parts.append(embed.footer.text or "")
    return "\n".join(p for p in parts if p)


def attachment_bytes(attachment: discord.Attachment) -> bytes:
    """dpytest keeps a sent file on disk and points the attachment's url at it."""
    return Path(url2pathname(urlsplit(attachment.url).path)).read_bytes()


async def audit_rows_for(app: EngineApp, command: str) -> list[Any]:
    return [row for row in await app.journal.audit_rows(limit=200) if row.command == command]


@contextlib.asynccontextmanager
async def open_harness(
    tmp_path: Path,
    *,
    discord_settings: dict[str, Any] | None = None,
    until: time = time(12, 0),
    **settings_overrides: Any,
) -> AsyncIterator[Harness]:
    settings = sim_settings(
        tmp_path,
        until=until,
        discord=DEFAULT_DISCORD if discord_settings is None else discord_settings,
        channels=settings_overrides.pop("channels", DEFAULT_CHANNELS),
        **settings_overrides,
    )
    app = await build_app(settings)
    clock = TestClock(CLOCK_START)
    bot = TradingBot(app, settings.discord, settings.channels, clock=clock)
    try:
        await bot._async_setup_hook()
        await bot.setup_hook()
        if settings.sim.replay_speed == "max":
            await wait_for(lambda: app.feed.health.finished, within=30)
            await app.engine.settle()
        harness = _fake_discord(bot, app, clock)
        yield harness
    finally:
        await dpytest.empty_queue()
        # dpytest's FakeWebSocket has no socket, and discord.py 2.7's close() asks it
        # whether it is open.
        bot.ws = None  # type: ignore[assignment]
        await bot.close()


def _fake_discord(bot: TradingBot, app: EngineApp, clock: TestClock) -> Harness:
    dpytest.configure(bot, guilds=0, text_channels=0, voice_channels=0, members=0)
    # The bot asks for no members intent, so discord.py would not cache members; the fake
    # server needs them cached to exist at all. Discord's side of the fake, not the bot's.
    backend.get_state().member_cache_flags = discord.MemberCacheFlags.all()
    guild = backend.make_guild("Trading desk", id_num=GUILD_ID)
    channels = {
        channel_id: backend.make_text_channel(name, guild, id_num=channel_id)
        for name, channel_id in (
            ("commands", COMMANDS_ID),
            ("general", OTHER_ID),
            ("system-alerts", ALERTS_ID),
            ("trades", TRADES_ID),
        )
    }
    control_role = backend.make_role("traders", guild, id_num=CONTROL_ROLE_ID)
    read_role = backend.make_role("watchers", guild, id_num=READ_ROLE_ID)
    backend.make_member(backend.get_state().user, guild, nick="trader-bot")

    def member(name: str, user_id: int, roles: list[discord.Role] | None = None) -> Any:
        user = backend.make_user(name, f"{user_id % 10000:04}", id_num=user_id)
        return backend.make_member(user, guild, roles=roles)

    return Harness(
        bot=bot,
        app=app,
        clock=clock,
        guild=guild,
        commands=channels[COMMANDS_ID],
        other=channels[OTHER_ID],
        alerts=channels[ALERTS_ID],
        controller=member("alice", CONTROLLER_ID),
        role_controller=member("bob", ROLE_CONTROLLER_ID, [control_role]),
        reader=member("carol", READER_ID),
        role_reader=member("dave", ROLE_READER_ID, [read_role]),
        stranger=member("mallory", STRANGER_ID),
    )


def keep_text_with_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """dpytest drops a message's content and embeds when it carries files (discord.py moves
    them into the multipart body); put them back so tests see what Discord would show."""
    original = backend.FakeHttp.send_message

    async def send_message(
        self: backend.FakeHttp, channel_id: int, *, params: discord.http.MultipartParameters
    ) -> Any:
        # dpytest's send_message reads ``channel`` from its caller's frame: keep the name.
        channel = backend._get_higher_locs(1).get("channel")  # noqa: F841
        if params.payload is None and params.multipart:
            payload = json.loads(params.multipart[0]["value"])
            params = discord.http.MultipartParameters(payload, params.multipart, params.files)
        return await original(self, channel_id, params=params)

    monkeypatch.setattr(backend.FakeHttp, "send_message", send_message)


@pytest.fixture(autouse=True)
def _sent_files_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dpytest writes every file the bot sends to ./dpytest_N.dat: keep them in tmp_path."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    keep_text_with_files(monkeypatch)
    async with open_harness(tmp_path) as h:
        yield h
