"""Backtests asked for while the engine trades (``!backtest`` from Discord or the console).

Each runs in a process of its own (spawned, at a lower CPU priority), so the engine's event
loop only reads a few small messages from a pipe: its loop lag does not change (README,
"Backtest while trading"). One backtest at a time per person; the request is checked here
(strategy, parameters, data) before anything starts, so a bad one is one line at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config import Settings
from engine.backtest import child
from engine.backtest.metrics import Metrics
from engine.backtest.plan import PlanError, Request, strategy_specs
from engine.errors import DomainError

log = logging.getLogger(__name__)

MAX_DAYS = 250
TIMEOUT_S = 600.0

Progress = Callable[[float], Awaitable[None]]
"""Called with the share of bars read so far (0..1), at most every percent."""


class BacktestRefused(DomainError):
    """The backtest cannot run as asked: the reason, for the trader."""


@dataclass(frozen=True)
class BacktestOutcome:
    strategy: str
    start: str
    end: str
    metrics: Metrics
    text: str
    folder: Path
    chart: Path


@dataclass
class Running:
    strategy: str
    days: int
    started: datetime
    done: float = 0.0
    """Share of bars read."""
    process: Any = field(default=None, repr=False)


class BacktestService:
    def __init__(self, settings: Settings, *, timeout_s: float = TIMEOUT_S) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self.running: dict[str, Running] = {}
        """Who has a backtest running, and which."""

    async def run(
        self,
        owner: str,
        strategy: str,
        days: int,
        progress: Progress | None = None,
        *,
        started: Callable[[], Awaitable[None]] | None = None,
    ) -> BacktestOutcome:
        """Backtest ``strategy`` over the last ``days`` trading days of stored bars, for
        ``owner`` (a person: one backtest at a time each). ``started`` is awaited once the
        request is accepted, just before the run starts. ``BacktestRefused`` when it cannot
        run (before ``started``) or failed; the report folder is in the data dir."""
        current = self.running.get(owner)
        if current is not None:
            raise BacktestRefused(
                f"your backtest of {current.strategy} ({current.days} days) is still running "
                f"({current.done:.0%} done): one at a time, it answers when it is done"
            )
        if not 1 <= days <= MAX_DAYS:
            raise BacktestRefused(f"days must be a whole number from 1 to {MAX_DAYS}")
        running = self.running[owner] = Running(strategy, days, datetime.now(UTC))
        try:
            request = Request(strategy=strategy, days=days)
            await self._check(request)
            if started is not None:
                await started()
            folder = self._folder(strategy, owner)
            payload = child.Payload(self._settings, request, folder)
            return await self._spawn(payload, running, progress)
        finally:
            del self.running[owner]

    async def stop(self) -> None:
        """Kill every backtest still running (the engine is stopping)."""
        for running in list(self.running.values()):
            process = running.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

    async def _check(self, request: Request) -> None:
        """The strategy and its parameters, through the engine's loader (importing a user's
        module: off the loop). The data is checked by the backtest process."""
        try:
            await asyncio.to_thread(strategy_specs, self._settings, request)
        except PlanError as exc:
            configured = ", ".join(slot.name or slot.use for slot in self._settings.strategy.slots)
            why = " ".join(str(exc).split())
            if why.startswith("--strategy: "):  # the option is the command's first word here
                detail = why.removeprefix("--strategy: ")
                why = f"unknown strategy ({detail}; configured: {configured})"
            raise BacktestRefused(why) from None

    def _folder(self, strategy: str, owner: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{strategy}-{owner}")[:60]
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return self._settings.storage.data_dir / "backtests" / f"{stamp}-{safe}"

    async def _spawn(
        self, payload: child.Payload, running: Running, progress: Progress | None
    ) -> BacktestOutcome:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.backtest.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Inherited: an unexpected error's traceback lands where the engine's output goes.
            stderr=None,
        )
        running.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(child.frame(payload))
        process.stdin.close()
        try:
            async with asyncio.timeout(self._timeout_s):
                while True:
                    message = await child.read_frame(process.stdout)
                    if message is None:
                        code = await process.wait()
                        raise BacktestRefused(
                            f"the backtest process ended without a result (exit {code})"
                        )
                    kind = message[0]
                    if kind == "progress":
                        running.done = message[1]
                        if progress is not None:
                            await progress(message[1])
                    elif kind == "error":
                        raise BacktestRefused(message[1])
                    else:
                        _, metrics, text, chart, start, end = message
                        folder = payload.folder
                        return BacktestOutcome(
                            running.strategy, start, end, metrics, text, folder, Path(chart)
                        )
        except TimeoutError:
            raise BacktestRefused(
                f"the backtest took longer than {self._timeout_s:.0f} s and was stopped: "
                "ask for fewer days, or run it with python run_bot.py backtest"
            ) from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()
