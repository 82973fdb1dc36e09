"""The Discord bot: the trader's phone-side face of the engine.

``TradingBot`` is given the engine app and its settings in its constructor (no globals).
``setup_hook`` starts the engine on the bot's own event loop, loads the cogs and starts the
background services (alert router, scheduler); ``close`` stops them in reverse and closes the
engine and journal. Command errors become short replies; details go to the log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import (
    CONTROL_OFF,
    Access,
    AccessDenied,
    audit_denial,
    caller_of,
    control_configured,
    decide,
    raw_args,
)
from bot.confirm import ConfirmationRegistry, ConfirmView
from bot.dedupe import DedupeGuard
from config import ChannelSettings, DiscordSettings
from engine.app import EngineApp
from engine.clock import Clock, SystemClock
from engine.errors import DomainError

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.trading", "cogs.control", "cogs.help", "cogs.backtest")

UNEXPECTED = "Something went wrong; it is logged."


class Service(Protocol):
    """A background component whose lifetime the bot owns (alert router, scheduler).
    ``start`` may be a plain or an async method."""

    def start(self) -> Awaitable[None] | None: ...

    async def stop(self) -> None: ...


class TradingBot(commands.Bot):
    def __init__(
        self,
        app: EngineApp,
        discord_settings: DiscordSettings,
        channel_settings: ChannelSettings,
        *,
        services: Sequence[Service] = (),
        early_services: Sequence[Service] = (),
        clock: Clock | None = None,
    ) -> None:
        """``early_services`` start before the engine (the alert router, so start-up alerts
        are not missed) and stop after it; ``services`` start after the engine (the
        scheduler needs it running) and stop before it."""
        intents = discord.Intents.default()
        intents.message_content = True  # prefix commands; also enable it in the Developer Portal
        super().__init__(
            command_prefix=discord_settings.command_prefix,
            intents=intents,
            help_command=None,
            # Phones capitalise the first letter and add a space after "!".
            case_insensitive=True,
            strip_after_prefix=True,
            # Replies quote user text (halt reasons): never let that ping anyone.
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.app = app
        self.discord_settings = discord_settings
        self.channel_settings = channel_settings
        self.clock: Clock = clock or SystemClock()
        self.confirmations = ConfirmationRegistry(self.clock, discord_settings.confirm_timeout_s)
        self.dedupe = DedupeGuard(self.clock, discord_settings.dedupe_window_s)
        self._early: list[Service] = list(early_services)
        self._services: list[Service] = list(services)
        self._started_early: list[Service] = []
        self._started: list[Service] = []
        self._engine_started = False
        self._shutdown: asyncio.Task[None] | None = None
        self._views: dict[str, ConfirmView] = {}

    def add_service(self, service: Service, *, before_engine: bool = False) -> None:
        """Register a service to start in ``setup_hook`` (call before the bot starts)."""
        if self._engine_started:
            raise RuntimeError("services must be added before the bot starts")
        (self._early if before_engine else self._services).append(service)

    def track_view(self, view: ConfirmView) -> None:
        """Remember live confirmation buttons, to disable them when their code is used by
        text and to stop their timers on ``close``."""
        self._views = {c: v for c, v in self._views.items() if not v.is_finished()}
        self._views[view.code] = view

    async def retire_view(self, code: str) -> None:
        view = self._views.pop(code, None)
        if view is not None:
            await view.retire()

    async def expire_view(self, code: str) -> None:
        view = self._views.pop(code, None)
        if view is not None:
            await view.expire()

    def view_for(self, code: str) -> ConfirmView | None:
        """The live confirmation buttons of ``code`` (what discord.py's timer would expire)."""
        return self._views.get(code)

    # ---- lifetime ------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        self._engine_started = True
        await _start_all(self._early, self._started_early)
        await self.app.start()
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await _start_all(self._services, self._started)
        await self._sync_slash_commands()

    async def _sync_slash_commands(self) -> None:
        guild_id = self.discord_settings.guild_id
        if guild_id is None:
            return
        if self.http.token is None:
            log.debug("not logged in (test harness): slash commands not synced")
            return
        guild = discord.Object(id=guild_id)
        try:
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        except (discord.HTTPException, app_commands.AppCommandError) as exc:
            log.warning(
                "slash commands not synced to guild %s (prefix commands still work): %s",
                guild_id,
                exc,
            )
            return
        log.info("synced %d slash commands to guild %s", len(synced), guild_id)

    async def close(self) -> None:
        """Stop services, then the engine (journal closed), then the gateway. Safe to call
        more than once and concurrently."""
        if self._shutdown is None:
            self._shutdown = asyncio.get_running_loop().create_task(self._stop_everything())
        await asyncio.shield(self._shutdown)
        await super().close()

    async def _stop_everything(self) -> None:
        for view in self._views.values():
            view.stop()
        self._views.clear()
        await _stop_all(self._started)
        try:
            await stop_app(self.app)
        finally:
            await _stop_all(self._started_early)

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected to Discord as %s (%s) in %d servers",
            user,
            user.id if user else "?",
            len(self.guilds),
        )
        for problem in self.setup_problems():
            log.warning("Discord setup: %s", problem)

    def setup_problems(self) -> list[str]:
        """Configured ids the bot cannot see (a wrong id, or the bot not invited there), and
        control commands left without anyone allowed to run them."""
        s = self.discord_settings
        problems = []
        if s.guild_id is not None and self.get_guild(s.guild_id) is None:
            problems.append(
                f"DISCORD_GUILD_ID {s.guild_id}: the bot is not in this server "
                "(invite it: docs/discord.md)"
            )
        named = [("DISCORD_COMMAND_CHANNEL_IDS", cid) for cid in s.command_channel_ids]
        for field in ("heartbeat_id", "system_alerts_id", "trades_id", "reports_id"):
            cid = getattr(self.channel_settings, field)
            if cid is not None:
                named.append((f"CHANNEL_{field.upper()}", cid))
        for setting, cid in named:
            if self.get_channel(cid) is None:
                problems.append(f"{setting} {cid}: no such channel is visible to the bot")
        if not control_configured(s):
            problems.append(CONTROL_OFF)
        return problems

    # ---- errors --------------------------------------------------------------------------

    async def on_command_error(
        self, ctx: commands.Context[Any], error: commands.CommandError
    ) -> None:
        """Short helpful replies; never a traceback in chat; context in the log."""
        cause = unwrap(error)
        where = f"user {ctx.author.id} channel {getattr(ctx.channel, 'id', None)}"
        name = ctx.command.qualified_name if ctx.command else ctx.invoked_with
        prefix = self.discord_settings.command_prefix
        if isinstance(cause, commands.CommandNotFound):
            await self._unknown_command(ctx, prefix)
            return
        if isinstance(cause, AccessDenied):
            await self._reply(ctx, f"⛔ {cause}")
            return
        if isinstance(cause, commands.CheckFailure):
            log.info("check failed for %s by %s: %s", name, where, cause)
            await self._reply(ctx, f"⛔ {cause}" if str(cause) else "⛔ Not allowed here.")
            return
        if isinstance(cause, commands.UserInputError):
            log.info("bad arguments for %s by %s: %s", name, where, cause)
            await self._reply(ctx, usage_reply(ctx, prefix, cause))
            return
        if isinstance(cause, DomainError):
            log.info("%s by %s refused: %s", name, where, cause)
            await self._reply(ctx, f"✋ {cause}")
            return
        log.error("command %s by %s failed", name, where, exc_info=cause)
        await self._reply(ctx, UNEXPECTED)

    async def _unknown_command(self, ctx: commands.Context[Any], prefix: str) -> None:
        # Only people who may use the bot, where they may use it, get an answer: elsewhere
        # "!something" may well be meant for another bot.
        caller = caller_of(ctx)
        if not decide(self.discord_settings, caller, Access.READ).allowed:
            log.debug("ignored unknown command from %s", caller.actor)
            return
        word = (ctx.invoked_with or "").strip()
        await self._reply(ctx, f"Unknown command `{prefix}{word}`. Try `{prefix}help`.")

    async def _reply(self, ctx: commands.Context[Any], content: str) -> None:
        try:
            await ctx.send(content, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not send an error reply in channel %s", ctx.channel.id)

    async def audit_refusal(
        self, ctx: commands.Context[Any], why: str, *, verdict: str = "denied"
    ) -> None:
        """Record a control command that did not reach the engine: ``denied`` (a bad or
        expired code...) or ``ignored`` (a repeat within the dedupe window)."""
        caller = caller_of(ctx)
        name = ctx.command.qualified_name if ctx.command else (ctx.invoked_with or "?")
        if verdict == "denied":
            await audit_denial(self.app, caller, name, raw_args(ctx), why)
        else:
            log.info("%s %s by %s: %s", verdict, name, caller.actor, why)
            await self.app.commands.record_refused(
                caller.actor, name, raw_args(ctx), f"{verdict}: {why}"
            )


async def _start_all(services: Sequence[Service], started: list[Service]) -> None:
    for service in services:
        result = service.start()
        if inspect.isawaitable(result):
            await result
        started.append(service)


async def _stop_all(started: list[Service]) -> None:
    """Newest first; one failing service does not keep the others running."""
    while started:
        service = started.pop()
        try:
            await service.stop()
        except Exception:
            log.exception("stopping %s failed", type(service).__name__)


def unwrap(error: BaseException) -> BaseException:
    """The exception behind discord.py's invoke/hybrid wrappers."""
    seen = 0
    while seen < 5 and isinstance(
        error,
        commands.CommandInvokeError | commands.HybridCommandError | app_commands.CommandInvokeError,
    ):
        inner = getattr(error, "original", None)
        if inner is None:
            break
        error = inner
        seen += 1
    return error


def usage_reply(ctx: commands.Context[Any], prefix: str, error: BaseException) -> str:
    command = ctx.command
    if command is None:
        return f"Try `{prefix}help`."
    signature = f" {command.signature}" if command.signature else ""
    usage = f"Usage: `{prefix}{command.qualified_name}{signature}`"
    if isinstance(error, commands.TooManyArguments):
        if not command.clean_params:
            return f"`{prefix}{command.qualified_name}` takes no arguments."
        return f"Too many arguments. {usage}"
    if isinstance(error, commands.BadArgument) and str(error):
        return f"{error} {usage}"
    return usage


async def stop_app(app: EngineApp) -> None:
    """Close the engine and journal. An engine that never started only has its broker and
    journal closed: ``stop`` would record a clean shutdown for a run that never happened,
    hiding an earlier crash from the next start."""
    if app.engine.started_mono is not None:
        await app.stop()
        return
    try:
        await app.broker.close()
    except Exception:
        log.exception("closing the broker failed")
    finally:
        await app.journal.close()
