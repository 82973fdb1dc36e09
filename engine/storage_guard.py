"""The journal cannot write (disk full, read-only, I/O error): no new risk, the trader keeps
control, and everything heals once it can write again.

From the first failed write the engine is REDUCING, held in memory (cause ``storage``: no new
positions; halt, flatten and cancels still work and their states are kept unpersisted by the
state controller), with a critical alert. When the journal writes again: the state changes
made meanwhile are written, the fills the journal could not write are recovered from the
broker, and the engine lifts its own REDUCING (a person's HALT or REDUCING stays).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from engine.bus import EventBus
from engine.clock import Clock
from engine.errors import BrokerError, TradingStateError
from engine.events import EngineError, Notice, Severity
from engine.execution import ExecutionManager
from engine.risk import Cause, TradingStateController

log = logging.getLogger(__name__)

ACTOR = "journal"


class StorageGuard:
    """``on_writable_change`` is the journal's callback (``Journal.on_writable_change``)."""

    def __init__(
        self,
        *,
        state: TradingStateController,
        execution: ExecutionManager,
        bus: EventBus,
        clock: Clock,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._state = state
        self._execution = execution
        self._bus = bus
        self._clock = clock
        self._spawn = spawn
        self._down_since: datetime | None = None
        self._lock = asyncio.Lock()

    @property
    def down_since(self) -> datetime | None:
        """When the journal stopped writing; None while it writes."""
        return self._down_since

    def on_writable_change(self, writable: bool, reason: str) -> None:
        """Called by the journal (on the loop, must not block) on each change."""
        if writable:
            self._spawn(self.recover())
        else:
            self._spawn(self.degrade(reason))

    async def degrade(self, reason: str) -> None:
        """REDUCING in memory and a critical alert, once per outage."""
        async with self._lock:
            if self._down_since is not None:
                return
            self._down_since = self._clock.now()
            log.error("journal cannot be written: %s", reason)
            self._bus.publish(
                EngineError(
                    ts=self._clock.now(),
                    component="journal",
                    message=(
                        f"the journal cannot be written ({reason}): no new positions "
                        "(REDUCING) until it can; halt, flatten and cancels still work"
                    ),
                    severity=Severity.CRITICAL,
                )
            )
            await self._state.reduce(
                ACTOR,
                f"journal cannot be written: {reason}",
                cause=Cause.STORAGE,
                unless_halted=True,
            )

    async def recover(self) -> None:
        """Write what waited, recover missed fills from the broker, lift our own REDUCING.

        Anything that fails leaves the engine REDUCING; the next writable change (or a
        person) takes it from there."""
        async with self._lock:
            since = self._down_since
            if since is None:
                return
            if await self._state.persist_pending():
                return  # it failed again: the journal will say when it writes
            try:
                recovered = await self._execution.recover(since - timedelta(minutes=1))
            except BrokerError as exc:
                self._notify(
                    Severity.WARNING,
                    "⚠️ The journal can be written again, but recovering fills from the "
                    f"broker failed ({exc}): trading stays REDUCING.",
                )
                return
            self._down_since = None
            try:
                after = await self._state.resume(
                    ACTOR, "journal writable again", if_cause=Cause.STORAGE
                )
            except TradingStateError as exc:
                log.warning("journal REDUCING not lifted: %s", exc)
                self._down_since = since
                return
            self._notify(
                Severity.INFO,
                f"✅ The journal can be written again; {recovered} missed fills recovered from "
                f"the broker. Trading is {after.state.value}.",
            )

    def _notify(self, severity: Severity, text: str) -> None:
        self._bus.publish(
            Notice(
                ts=self._clock.now(),
                kind="storage",
                title="Journal",
                text=text,
                severity=severity,
            )
        )
