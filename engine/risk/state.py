"""The one owner of the trading state: ACTIVE, REDUCING or HALTED.

Every change is written to the journal first, then applied, then published as a
``TradingStateChanged`` event, so what the trader is told has been persisted and a restart
restores what was last acknowledged. One exception keeps the trader in control when the
journal cannot write (disk full, read-only, I/O error): a HALTED or REDUCING is applied in
memory anyway, kept as unpersisted and written, in order, as soon as the journal can write
again (``persist_pending``); a change back to ACTIVE is refused while it cannot. A halt caused
by the daily loss limit stays on for the rest of that trading day unless the trader
explicitly overrides it, and the loss limit halts at most once per trading day: this
controller is the one owner of that day (``claim_loss_halt``), restarts included.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from engine.bus import EventBus
from engine.clock import Clock, trading_day
from engine.domain import TradingState, ensure_utc
from engine.errors import JournalWriteError, TradingStateError
from engine.events import TradingStateChanged
from engine.risk.gate import LossHaltLatch

log = logging.getLogger(__name__)


class StatePersistence(Protocol):
    async def record_trading_state(
        self, state: TradingState, actor: str, reason: str, cause: str, ts: datetime
    ) -> None: ...


class Cause(StrEnum):
    MANUAL = "manual"
    LOSS_LIMIT = "loss_limit"
    BROKER_UNREACHABLE = "broker_unreachable"
    STALE_DATA = "stale_data"
    ENGINE_STALE = "engine_stale"
    REJECTS = "repeated_rejects"
    FLATTEN = "flatten"
    STORAGE = "storage"
    STARTUP = "startup"


# How hard a cause is to lift. Re-entering the current state only replaces the record when the
# new cause ranks higher: a loss-limit halt over a manual one is recorded (it adds the same-day
# lock), while an automatic halt over a manual one is not, so that automatic recovery (which
# resumes only its own cause, see ``if_cause``) can never lift a halt a person set. A person's
# REDUCING outranks the flatten's own, so the flatten's clean-up does not undo it. The journal's
# REDUCING (storage) takes over any automatic one, the flatten's included, and lifts itself
# once the journal writes again; a person's stays.
_RANK: dict[Cause, int] = {
    Cause.STARTUP: 0,
    Cause.BROKER_UNREACHABLE: 1,
    Cause.STALE_DATA: 1,
    Cause.ENGINE_STALE: 1,
    Cause.REJECTS: 1,
    Cause.FLATTEN: 2,
    Cause.STORAGE: 3,
    Cause.MANUAL: 4,
    Cause.LOSS_LIMIT: 5,
}


@dataclass(frozen=True)
class StateRecord:
    """One acknowledged trading state with who set it, why, and when (aware UTC)."""

    state: TradingState
    actor: str
    reason: str
    cause: Cause
    ts: datetime

    def __post_init__(self) -> None:
        # Records restored from the journal carry plain strings (an unknown cause raises
        # ValueError: start-up treats the row as unreadable) and any time zone.
        object.__setattr__(self, "state", TradingState(self.state))
        object.__setattr__(self, "cause", Cause(self.cause))
        object.__setattr__(self, "ts", ensure_utc(self.ts, field="state ts"))

    @property
    def trading_day(self) -> date:
        return trading_day(self.ts)


class TradingStateController:
    """Serializes, persists and publishes every trading-state change."""

    def __init__(
        self,
        bus: EventBus,
        clock: Clock,
        store: StatePersistence,
        initial: StateRecord | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._store = store
        self._lock = asyncio.Lock()
        self._unpersisted: list[StateRecord] = []
        self._loss_halts = LossHaltLatch()
        self._record = initial or StateRecord(
            TradingState.ACTIVE, "system", "startup", Cause.STARTUP, clock.now()
        )

    def restore(self, record: StateRecord | None, *, loss_halt_day: date | None = None) -> None:
        """Adopt what the journal last acknowledged (start-up, before any change): the record
        in force and the trading day the loss limit last halted on."""
        if record is not None:
            self._record = record
        self._loss_halts = LossHaltLatch(loss_halt_day)

    def claim_loss_halt(self) -> bool:
        """True once per trading day: the loss limit may halt now, and not again today (a
        trader who lifted today's loss-limit halt with an override is not halted again)."""
        return self._loss_halts.claim(trading_day(self._clock.now()))

    @property
    def state(self) -> TradingState:
        return self._record.state

    @property
    def record(self) -> StateRecord:
        return self._record

    @property
    def unpersisted(self) -> int:
        """Changes applied in memory that the journal could not write yet."""
        return len(self._unpersisted)

    @property
    def loss_limit_locked(self) -> bool:
        """HALTED by the daily loss limit on the current trading day."""
        return self._is_locked(self._record, trading_day(self._clock.now()))

    async def set(
        self,
        new: TradingState,
        actor: str,
        reason: str,
        *,
        cause: Cause = Cause.MANUAL,
        override: bool = False,
        if_cause: Cause | None = None,
        unless_halted: bool = False,
    ) -> StateRecord:
        """Move to ``new`` and return the record now in force.

        Re-entering the current state is a no-op (no write, no event) unless it is HALTED or
        REDUCING and ``cause`` ranks above the current cause (a loss-limit halt over a manual
        one). Lifting a same-day loss-limit halt raises
        ``TradingStateError`` unless ``override``. With ``if_cause``, nothing happens unless
        the current cause is that one: automatic recovery uses it so it only lifts its own halt.
        With ``unless_halted``, nothing happens while HALTED (checked under the lock, so an
        automatic REDUCING can never land on top of a halt that raced it).
        When the journal cannot write (``JournalWriteError``) a HALTED or REDUCING is applied
        anyway and persisted later (``persist_pending``), while ACTIVE is refused with a
        ``TradingStateError`` and nothing changes. Any other failure to persist changes
        nothing and propagates.
        """
        new = TradingState(new)
        cause = Cause(cause)
        if not actor:
            raise ValueError("a trading-state change needs an actor")
        async with self._lock:
            current = self._record
            if if_cause is not None and current.cause != if_cause:
                return current
            if unless_halted and current.state is TradingState.HALTED:
                return current
            if new is current.state and (
                new is TradingState.ACTIVE or _RANK[cause] <= _RANK[current.cause]
            ):
                return current
            now = ensure_utc(self._clock.now())
            if new is not TradingState.HALTED and self._is_locked(current, trading_day(now)):
                if not override:
                    raise TradingStateError(_locked_message(current))
                prefix = f"override of the loss-limit halt of {current.trading_day.isoformat()}"
                reason = f"{prefix}: {reason}" if reason else prefix
            record = StateRecord(new, actor, reason, cause, now)
            try:
                await self._persist(record)
            except JournalWriteError as exc:
                if new is TradingState.ACTIVE:
                    raise TradingStateError(_unwritable_message(current, exc)) from exc
                log.error("%s by %s applied but not on disk yet: %s", new.value, actor, exc)
                self._unpersisted.append(record)
            self._record = record
            if new is TradingState.HALTED and cause is Cause.LOSS_LIMIT:
                self._loss_halts.halted_on(record.trading_day)
            self._bus.publish(
                TradingStateChanged(
                    ts=now, old=current.state, new=new, actor=actor, reason=reason, cause=cause
                )
            )
            return record

    async def persist_pending(self) -> int:
        """Write the changes applied while the journal could not (oldest first); returns how
        many are still unwritten. Raises nothing: a failure leaves them for the next call."""
        async with self._lock:
            try:
                await self._persist(None)
            except JournalWriteError as exc:
                log.warning("%d trading-state changes still unwritten: %s", self.unpersisted, exc)
            return self.unpersisted

    async def _persist(self, record: StateRecord | None) -> None:
        # Unwritten changes first, so the journal keeps their order; one that fails stops here.
        while self._unpersisted:
            await self._write(self._unpersisted[0])
            self._unpersisted.pop(0)
        if record is not None:
            await self._write(record)

    async def _write(self, r: StateRecord) -> None:
        await self._store.record_trading_state(r.state, r.actor, r.reason, r.cause, r.ts)

    async def halt(self, actor: str, reason: str, *, cause: Cause = Cause.MANUAL) -> StateRecord:
        return await self.set(TradingState.HALTED, actor, reason, cause=cause)

    async def reduce(
        self,
        actor: str,
        reason: str,
        *,
        cause: Cause = Cause.MANUAL,
        override: bool = False,
        unless_halted: bool = False,
    ) -> StateRecord:
        return await self.set(
            TradingState.REDUCING,
            actor,
            reason,
            cause=cause,
            override=override,
            unless_halted=unless_halted,
        )

    async def resume(
        self,
        actor: str,
        reason: str = "",
        *,
        override: bool = False,
        if_cause: Cause | None = None,
    ) -> StateRecord:
        """Back to ACTIVE (cause ``manual``); see ``set`` for ``override`` and ``if_cause``."""
        return await self.set(
            TradingState.ACTIVE, actor, reason, override=override, if_cause=if_cause
        )

    @staticmethod
    def _is_locked(record: StateRecord, today: date) -> bool:
        # ">=" rather than "==": a record stamped ahead of our clock (clock skew across a
        # restart) must not lift early.
        return (
            record.state is TradingState.HALTED
            and record.cause == Cause.LOSS_LIMIT
            and record.trading_day >= today
        )


def _unwritable_message(current: StateRecord, exc: JournalWriteError) -> str:
    return (
        f"The journal cannot be written ({exc}), so trading stays {current.state.value}: "
        f"no new positions until it can. !halt and !flatten still work."
    )


def _locked_message(record: StateRecord) -> str:
    day = record.trading_day.isoformat()
    why = f" ({record.reason})" if record.reason else ""
    return (
        f"Trading was halted by the daily loss limit on {day}{why}. "
        f"It stays halted for the rest of that trading day and can be lifted from the next one. "
        f"To lift it now anyway, repeat the command with override: `resume override`."
    )
