"""The console transport: the trader's commands from stdin, alerts to stdout.

It calls the same command service Discord does. Reads piped stdin, so it can be scripted;
returns 0 on ``!quit`` or at the end of input.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from bot import backtest_render, catalog, charts, reports, text
from bot.alerts import AlertRouter, ConsoleTransport
from bot.jobs import TradingJobs
from bot.web import WebServer
from engine.app import EngineApp
from engine.backtest.service import BacktestService
from engine.clock import SystemClock, trading_day
from engine.commands import PnLReport
from engine.errors import DomainError
from engine.flatten import FlattenProgress
from engine.journal_owner import JournalOwnerError

log = logging.getLogger(__name__)

ACTOR = "console"


def console_help() -> str:
    """The catalog's console lines (``bot.catalog``), aligned."""
    lines = catalog.help_lines(catalog.Surface.CONSOLE)
    width = max(len(usage) for usage, _ in lines) + 3
    return "Commands:\n" + "\n".join(f"  {'!' + usage:<{width}}{what}" for usage, what in lines)


class Console:
    def __init__(self, app: EngineApp, out: TextIO) -> None:
        self._app = app
        self._out = out
        self._backtests = BacktestService(app.settings)
        self._commands: dict[str, Callable[[list[str]], Awaitable[bool]]] = {
            "status": self._status,
            "positions": self._positions,
            "orders": self._orders,
            "pnl": self._pnl,
            "trades": self._trades,
            "audit": self._audit,
            "backtest": self._backtest,
            "halt": self._halt,
            "resume": self._resume,
            "flatten": self._flatten,
            "help": self._help,
            "quit": self._quit,
            "exit": self._quit,
        }

    def print(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    async def handle(self, line: str) -> bool:
        """Run one input line; False means stop."""
        words = line.strip().split()
        if not words:
            return True
        name = words[0].lstrip("!").lower()
        handler = self._commands.get(name)
        if handler is None or not words[0].startswith("!"):
            self.print(f"Unknown command {words[0]!r}. Type !help for the list.")
            return True
        try:
            return await handler(words[1:])
        except DomainError as exc:
            self.print(f"✋ {exc}")
        except Exception:
            log.exception("console command %r failed", line.strip())
            self.print("Something went wrong; the details are in the log.")
        return True

    async def _status(self, args: list[str]) -> bool:
        self._no_args("status", args)
        self.print(text.render_status(await self._app.commands.status(ACTOR)))
        return True

    async def _positions(self, args: list[str]) -> bool:
        self._no_args("positions", args)
        self.print(text.render_positions(await self._app.commands.positions(ACTOR)))
        return True

    async def _orders(self, args: list[str]) -> bool:
        self._no_args("orders", args)
        self.print(text.render_orders(await self._app.commands.orders(ACTOR)))
        return True

    async def _pnl(self, args: list[str]) -> bool:
        self._no_args("pnl", args)
        report = await self._app.commands.pnl(ACTOR)
        self.print(text.render_pnl(report))
        # Discord attaches the equity chart; a terminal gets the same PNG as a file.
        try:
            path = await self._write_chart(report)
        except Exception:
            log.exception("drawing the equity chart failed")
            self.print("The equity chart could not be drawn; the details are in the log.")
        else:
            self.print(f"📈 Equity chart: {path}")
        return True

    async def _write_chart(self, report: PnLReport) -> Path:
        png = await charts.pnl_chart_png(report)
        day = report.curve[-1][0] if report.curve else self._app.clock.now()
        data_dir = self._app.settings.storage.data_dir.resolve()
        path = data_dir / reports.equity_png_name(trading_day(day))
        await asyncio.to_thread(path.write_bytes, png)
        return path

    async def _trades(self, args: list[str]) -> bool:
        self._no_args("trades", args)
        self.print(text.render_trades(await self._app.commands.trades(ACTOR)))
        return True

    async def _audit(self, args: list[str]) -> bool:
        if len(args) > 1 or (args and not args[0].isdigit()):
            raise DomainError("Usage: !audit [n]")
        rows = await self._app.commands.audit(ACTOR, int(args[0]) if args else None)
        self.print(text.render_audit(rows))
        return True

    async def _backtest(self, args: list[str]) -> bool:
        if not 1 <= len(args) <= 2 or (len(args) == 2 and not args[1].isdigit()):
            raise DomainError("Usage: !backtest <strategy> [days]")
        strategy, days = args[0], int(args[1]) if len(args) == 2 else 5
        shown = -1

        async def progress(done: float) -> None:
            nonlocal shown
            if int(done * 4) > shown:  # a terminal gets a line a quarter
                shown = int(done * 4)
                self.print(backtest_render.progress_text(strategy, days, done))

        outcome = await self._backtests.run(ACTOR, strategy, days, progress)
        self.print(backtest_render.console_text(outcome))
        return True

    async def _halt(self, args: list[str]) -> bool:
        keep, reason = catalog.halt_args(" ".join(args))
        result = await self._app.commands.halt(ACTOR, reason, keep_positions=keep)
        self.print(text.render_halt(result))
        return True

    async def _resume(self, args: list[str]) -> bool:
        if args and args != ["override"]:
            raise DomainError("Usage: !resume [override]")
        report = await self._app.commands.resume(ACTOR, override=bool(args))
        self.print(text.render_resume(report))
        return True

    async def _flatten(self, args: list[str]) -> bool:
        if args and args != ["now"]:
            raise DomainError("Usage: !flatten [now]")
        preview = await self._app.commands.flatten_preview(ACTOR, audit=False)
        if preview.nothing_to_flatten:  # as the cog: recorded as ignored, nothing runs
            await self._app.commands.record_refused(
                ACTOR, "flatten", " ".join(args), f"ignored: {text.NOTHING_TO_FLATTEN}"
            )
            log.info("ignored flatten by %s: nothing open", ACTOR)
            self.print(text.NOTHING_TO_FLATTEN)
            return True

        last = ""

        async def progress(p: FlattenProgress) -> None:
            nonlocal last
            line = text.render_flatten_progress(p)
            if p.phase != "done" and line != last:  # a terminal gets each step once
                self.print(line)
                last = line

        report = await self._app.commands.flatten(ACTOR, progress)
        self.print(text.render_flatten(report))
        return True

    async def _help(self, args: list[str]) -> bool:
        self.print(console_help())
        return True

    async def _quit(self, args: list[str]) -> bool:
        return False

    @staticmethod
    def _no_args(name: str, args: list[str]) -> None:
        if args:
            raise DomainError(f"!{name} takes no arguments.")


def _stdin_lines(stdin: TextIO, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str]:
    """Lines from ``stdin`` ('' at the end). A daemon thread reads, so a pending read never
    keeps the process alive after a stop."""
    queue: asyncio.Queue[str] = asyncio.Queue()

    def reader() -> None:
        while True:
            line = stdin.readline()
            loop.call_soon_threadsafe(queue.put_nowait, line)
            if not line:
                return

    threading.Thread(target=reader, name="console-stdin", daemon=True).start()
    return queue


async def run_console(
    app: EngineApp,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Start the engine, serve commands until ``!quit``, end of input or ``stop`` (SIGTERM),
    then stop cleanly."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    stop = stop or asyncio.Event()
    console = Console(app, out)
    # The same router and jobs as the Discord bot, with stdout as every channel.
    router = AlertRouter(
        app.bus, ConsoleTransport(console.print), app.settings.channels, clock=SystemClock()
    )
    await router.start()
    web = WebServer(app, router=router) if app.settings.web.enabled else None
    jobs: TradingJobs | None = None
    try:
        try:
            await app.start()
            if web is not None:
                await web.start()
        except DomainError as exc:
            # Broker unreachable, keys refused...: one clear line, not a traceback. A
            # container's restart policy tries again, unless a setting must change first.
            log.info("engine failed to start", exc_info=True)  # the trace: log file only
            print(f"Cannot start: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, JournalOwnerError) else 1
        jobs = TradingJobs.for_app(app, router)
        await jobs.start()
        console.print(
            f"Trading console ({app.settings.mode}); type !help for commands, !quit to exit."
        )
        if web is not None:
            console.print(f"Web page: {web.url} (token: {web.token_source})")
        await _serve(console, stdin, out, stop)
    finally:
        try:
            if web is not None:
                await web.stop()
            if jobs is not None:
                await jobs.stop()
            await app.stop()
        finally:
            await router.stop()
    console.print("Stopped.")
    return 0


async def _serve(console: Console, stdin: TextIO, out: TextIO, stop: asyncio.Event) -> None:
    interactive = stdin.isatty()
    lines = _stdin_lines(stdin, asyncio.get_running_loop())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            if interactive:
                out.write("> ")
                out.flush()
            next_line = asyncio.ensure_future(lines.get())
            await asyncio.wait({next_line, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                next_line.cancel()
                console.print("Stopping (signal received)…")
                return
            line = next_line.result()
            if not line or not await console.handle(line):
                return
    finally:
        stopping.cancel()
