"""The dead-man's switch: during market hours, stale market data or an engine that stopped
beating sends a critical alert and moves trading to REDUCING.

Plain logic driven by ``check()`` (tests call it with a ``TestClock``) plus a small runner
loop, started by the engine itself (``TradingEngine.start``), so an engine run without the
scheduler is guarded too. The watchdog never overrides a HALT, and on recovery it lifts only a
REDUCING it set itself (``resume(..., if_cause=...)``), so a person's decision always stands.
A REDUCING it set before a restart is still its own: the first check after the restart takes
it over, and fresh data (or a fresh beat) after the restart lifts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import TradingState
from engine.events import Notice, Severity
from engine.feed.base import FeedHealth
from engine.risk.state import Cause, TradingStateController

log = logging.getLogger(__name__)

ACTOR = "watchdog"
NOTICE_KIND = "watchdog"
TITLE = "Dead-man's switch"

Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class WatchdogLimits:
    """How old market data and the engine's beat may get during market hours (seconds)."""

    stale_data_s: float
    engine_stale_s: float

    @property
    def check_interval_s(self) -> float:
        return check_interval(self.stale_data_s, self.engine_stale_s)


@dataclass(frozen=True, slots=True)
class WatchdogStatus:
    """What one check saw. Ages are seconds; None when not measured."""

    market_open: bool
    data_age_s: float | None
    beat_age_s: float | None
    tripped: frozenset[str]
    """Causes currently tripped: ``stale_data`` and/or ``engine_stale``."""


class Watchdog:
    """Watches the market-data feed and the engine's beat.

    ``last_beat`` returns the ``clock.monotonic()`` of the engine's last beat (None: it has
    not beaten yet, so there is nothing to judge). ``feed`` is the live ``FeedHealth``; its
    ``last_message_mono`` must come from the same clock. A finished replay is never stale.
    """

    def __init__(
        self,
        *,
        state: TradingStateController,
        bus: EventBus,
        clock: Clock,
        feed: FeedHealth,
        market_open: Callable[[datetime], bool],
        last_beat: Callable[[], float | None],
        stale_data_s: float,
        engine_stale_s: float,
    ) -> None:
        self._state = state
        self._bus = bus
        self._clock = clock
        self._feed = feed
        self._market_open = market_open
        self._last_beat = last_beat
        self._stale_data_s = stale_data_s
        self._engine_stale_s = engine_stale_s
        # Monotonic time the market was first seen open in this session: data older than
        # the open (last night's bars) must not count as stale at 09:30:00.
        self._open_since: float | None = None
        # Cause -> monotonic time it tripped; recovery needs evidence newer than that.
        self._tripped: dict[Cause, float] = {}
        self._adopted = False

    @property
    def tripped(self) -> frozenset[str]:
        return frozenset(self._tripped)

    async def check(self) -> WatchdogStatus:
        """Evaluate once: trip or recover, alert, and move the trading state."""
        now = self._clock.now()
        mono = self._clock.monotonic()
        if not self._adopted:
            self._adopt(mono)
        is_open = self._market_open(now)
        if not is_open:
            self._open_since = None
        elif self._open_since is None:
            self._open_since = mono

        data_age = self._data_age(mono) if is_open else None
        beat = self._last_beat()
        beat_age = None if beat is None else max(0.0, mono - beat)

        await self._evaluate_data(mono, data_age)
        await self._evaluate_engine(mono, is_open, beat, beat_age)
        return WatchdogStatus(is_open, data_age, beat_age, self.tripped)

    async def run(self, interval_s: float, sleep: Sleep = asyncio.sleep) -> None:
        """Check every ``interval_s`` until cancelled; a failing check is logged, not raised."""
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watchdog check failed")
            await sleep(interval_s)

    def _adopt(self, mono: float) -> None:
        """Take over a REDUCING this switch set before a restart (restored from the journal):
        it counts as tripped now, so only data or a beat newer than the restart lifts it."""
        self._adopted = True
        record = self._state.record
        if _ours(record.state, record.actor, record.cause):
            log.info("watchdog: REDUCING (%s) from before the restart is ours", record.cause)
            self._tripped.setdefault(record.cause, mono)

    # ---- conditions --------------------------------------------------------------------

    def _data_age(self, mono: float) -> float | None:
        if self._feed.finished or self._open_since is None:
            return None
        last = self._feed.last_message_mono
        reference = self._open_since if last is None else max(last, self._open_since)
        return max(0.0, mono - reference)

    async def _evaluate_data(self, mono: float, age: float | None) -> None:
        cause = Cause.STALE_DATA
        if cause in self._tripped:
            last = self._feed.last_message_mono
            flowing = last is not None and last > self._tripped[cause]
            if self._feed.finished or flowing:
                await self._recover(cause, "✅ Market data is flowing again.")
            return
        if age is not None and age > self._stale_data_s:
            await self._trip(
                cause,
                mono,
                f"market data stale: nothing for {age:.0f} s during market hours "
                f"(limit {self._stale_data_s:.0f} s)",
            )

    async def _evaluate_engine(
        self, mono: float, is_open: bool, beat: float | None, age: float | None
    ) -> None:
        cause = Cause.ENGINE_STALE
        if cause in self._tripped:
            if beat is not None and beat > self._tripped[cause]:
                await self._recover(cause, "✅ The engine is beating again.")
            return
        if is_open and age is not None and age > self._engine_stale_s:
            await self._trip(
                cause,
                mono,
                f"engine stopped beating: last beat {age:.0f} s ago during market hours "
                f"(limit {self._engine_stale_s:.0f} s)",
            )

    # ---- actions -----------------------------------------------------------------------

    async def _trip(self, cause: Cause, mono: float, reason: str) -> None:
        self._tripped[cause] = mono
        current = self._state.state
        if current is TradingState.ACTIVE:
            outcome = "Trading moves to REDUCING (no new positions) until it recovers."
        else:
            outcome = f"Trading stays {current.value}."
        log.warning("watchdog tripped: %s", reason)
        self._publish(Severity.CRITICAL, f"🚨 {reason[0].upper()}{reason[1:]}. {outcome}")
        # Never over a HALT: REDUCING would let positions be reduced that a person froze.
        await self._state.reduce(ACTOR, reason, cause=cause, unless_halted=True)

    async def _recover(self, cause: Cause, text: str) -> None:
        del self._tripped[cause]
        log.info("watchdog recovered: %s", cause)
        record = self._state.record
        if _ours(record.state, record.actor, record.cause) and not self._tripped:
            # if_cause: a person who took over the REDUCING meanwhile keeps it.
            after = await self._state.resume(ACTOR, f"{cause} recovered", if_cause=record.cause)
            if after.state is TradingState.ACTIVE:
                text += " Trading is back to ACTIVE."
        self._publish(Severity.INFO, text)

    def _publish(self, severity: Severity, text: str) -> None:
        self._bus.publish(
            Notice(
                ts=self._clock.now(),
                kind=NOTICE_KIND,
                title=TITLE,
                text=text,
                severity=severity,
            )
        )


def _ours(state: TradingState, actor: str, cause: Cause) -> bool:
    return (
        state is TradingState.REDUCING
        and actor == ACTOR
        and cause in (Cause.STALE_DATA, Cause.ENGINE_STALE)
    )


def check_interval(stale_data_s: float, engine_stale_s: float) -> float:
    """How often to check: a quarter of the tighter limit, between 1 and 15 seconds."""
    return max(1.0, min(15.0, min(stale_data_s, engine_stale_s) / 4))
