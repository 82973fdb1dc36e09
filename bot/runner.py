"""Runs the Discord bot and the engine in one event loop, and owns their lifetimes.

``run_discord(settings)`` builds the engine app and the bot, runs
``async with bot: await bot.start(token)``, and turns the startup failures a trader can fix
(a rejected token, the message-content intent not enabled) into one line on stderr with exit
code 2. The engine and journal are closed on every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TextIO

import aiohttp
import discord

from bot.bot import TradingBot, stop_app
from bot.discord_transport import DiscordTransport
from config import Settings
from engine.app import EngineApp, StartupError, build_app
from engine.clock import SystemClock
from engine.errors import DomainError
from engine.journal_owner import JournalOwnerError

log = logging.getLogger(__name__)

TOKEN_REJECTED = (
    "DISCORD_TOKEN was rejected by Discord: check the token in the Developer Portal > Bot > "
    "Reset Token, and DISCORD_TOKEN in .env"
)
INTENT_MISSING = (
    "Discord refused the connection (close code 4014): Enable MESSAGE CONTENT INTENT in the "
    "Developer Portal > Bot > Privileged Gateway Intents, then restart"
)
NO_TOKEN = "DISCORD_TOKEN is not set: add it to .env (see docs/discord.md)"
UNREACHABLE = "Could not reach Discord ({error}): check the network and try again"
FAILED = "The bot stopped with an error ({error}); the details are in the log"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2

StartFn = Callable[[TradingBot, str], Awaitable[None]]
BuildFn = Callable[[Settings], Awaitable[EngineApp]]
WireFn = Callable[[EngineApp, TradingBot], None]


def wire_alerts_and_jobs(app: EngineApp, bot: TradingBot) -> None:
    """The alert router (delivering through the bot to the alert channels; started before
    the engine), the scheduled jobs and the web server when enabled (started after it)."""
    from bot.alerts import AlertRouter
    from bot.charts import render_pnl_chart
    from bot.jobs import TradingJobs
    from engine.commands import PnLReport

    def chart(report: PnLReport) -> bytes:
        return render_pnl_chart(report)

    channels = app.settings.channels
    router = AlertRouter(app.bus, DiscordTransport(bot, channels), channels, clock=SystemClock())
    bot.add_service(router, before_engine=True)
    bot.add_service(TradingJobs.for_app(app, router, chart=chart))
    if app.settings.web.enabled:
        from bot.web import WebServer

        bot.add_service(WebServer(app, router=router))


async def _start(bot: TradingBot, token: str) -> None:
    await bot.start(token, reconnect=True)


async def run_discord(
    settings: Settings,
    *,
    start: StartFn = _start,
    build: BuildFn = build_app,
    wire: WireFn | None = wire_alerts_and_jobs,
    stderr: TextIO | None = None,
    handle_signals: bool = True,
) -> int:
    """Run until the bot is closed; the exit code for the process.

    ``start`` connects the bot (tests pass one that raises what Discord would); ``build``
    makes the engine app; ``wire`` adds the background services to the bot once it exists
    (they deliver through it): by default the alert router and the scheduled jobs.
    """
    err = stderr or sys.stderr
    token = settings.discord.token.get_secret_value() if settings.discord.token else ""
    if not token.strip():
        print(NO_TOKEN, file=err)
        return EXIT_CONFIG
    try:
        app = await build(settings)
    except StartupError as exc:
        print(f"Cannot start: {exc}", file=err)
        return EXIT_ERROR
    bot: TradingBot | None = None
    code = EXIT_ERROR
    try:
        bot = TradingBot(app, settings.discord, settings.channels)
        if wire is not None:
            wire(app, bot)
        with _close_on_sigterm(bot, enabled=handle_signals):
            async with bot:
                await start(bot, token.strip())
        code = EXIT_OK
    except DomainError as exc:  # raised by the engine's start inside setup_hook
        log.info("engine failed to start", exc_info=True)
        config = isinstance(exc, JournalOwnerError)
        code = _fail(err, f"Cannot start: {exc}", EXIT_CONFIG if config else EXIT_ERROR)
    except discord.LoginFailure:
        code = _fail(err, TOKEN_REJECTED)
    except discord.PrivilegedIntentsRequired:
        code = _fail(err, INTENT_MISSING)
    except discord.ConnectionClosed as exc:
        if exc.code == 4014:
            code = _fail(err, INTENT_MISSING)
        elif exc.code == 4004:
            code = _fail(err, TOKEN_REJECTED)
        else:
            log.error("Discord closed the connection", exc_info=exc)
            code = _fail(err, FAILED.format(error=f"close code {exc.code}"), EXIT_ERROR)
    except StartupError as exc:  # the web server could not listen
        code = _fail(err, f"Cannot start: {exc}", EXIT_ERROR)
    except (aiohttp.ClientError, OSError) as exc:
        code = _fail(err, UNREACHABLE.format(error=_short(exc)), EXIT_ERROR)
    except Exception as exc:
        log.exception("the Discord bot failed")
        code = _fail(err, FAILED.format(error=_short(exc)), EXIT_ERROR)
    finally:
        # bot.close() is idempotent; stop_app covers a bot that was never built.
        if bot is not None:
            try:
                await bot.close()
            except Exception:
                log.exception("closing the bot failed")
        await stop_app(app)
    return code


def _fail(err: TextIO, line: str, code: int = EXIT_CONFIG) -> int:
    print(line, file=err)
    log.error(line)
    return code


def _short(exc: BaseException) -> str:
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@contextlib.contextmanager
def _close_on_sigterm(bot: TradingBot, *, enabled: bool) -> Iterator[None]:
    """``docker stop`` sends SIGTERM: close the bot (and so the engine) cleanly."""
    loop = asyncio.get_running_loop()
    installed = False
    tasks: set[asyncio.Task[None]] = set()

    def on_sigterm() -> None:
        log.warning("SIGTERM: shutting down")
        task = loop.create_task(bot.close())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    if enabled:
        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            log.debug("SIGTERM handler not installed on this platform/thread")
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)
