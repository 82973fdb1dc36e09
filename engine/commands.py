"""The one implementation of every trader command, used by Discord, the console and the web
page alike.

Each call returns plain data (``engine.command_views``) or raises a ``DomainError`` whose
message is fit for the trader's screen, and each call is audited (who, when, what, result) in
the journal: a control command's row is committed before the reply, a read's is written behind
it. Control commands are also published so the alert router can echo them to system-alerts.
The scheduled reports read with ``audit=False``: a heartbeat every few minutes is no trader's
command. The rules for when a command may run (resume, the halt reason) are here and nowhere
else: the chat layers ask.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from engine import command_views as views
from engine.command_views import (
    AuditView,
    BrokerStatus,
    EquityPoint,
    FeedStatus,
    FlattenPreview,
    OrderView,
    PnLReport,
    PositionView,
    ResumePreview,
    ResumeReport,
    StatusReport,
    TradeView,
)
from engine.domain import TradingState, usd
from engine.engine import TradingEngine
from engine.errors import CommandError, DomainError
from engine.events import CommandAudited
from engine.flatten import FlattenReport, ProgressCallback
from engine.risk import StateRecord

__all__ = [
    "DEFAULT_AUDIT_ROWS",
    "MAX_REASON_CHARS",
    "AuditView",
    "BrokerStatus",
    "CommandService",
    "EquityPoint",
    "FeedStatus",
    "FlattenPreview",
    "HaltReport",
    "OrderView",
    "PnLReport",
    "PositionView",
    "ResumePreview",
    "ResumeReport",
    "StatusReport",
    "TradeView",
    "clean_reason",
    "count",
]

log = logging.getLogger(__name__)
R = TypeVar("R")

MAX_REASON_CHARS = 200
DEFAULT_AUDIT_ROWS = 20
MAX_AUDIT_ROWS = 500
MAX_EQUITY_DAYS = 366

FLATTEN_RUNNING = "A flatten is running; resume when it has finished."
ALREADY_ACTIVE = "Trading is already ACTIVE."
LOSS_LIMIT_LOCKED = "This is a loss-limit halt: only `resume override` lifts it today."


@dataclass(frozen=True, slots=True)
class HaltReport:
    record: StateRecord
    """The halt in force: when trading was already HALTED, the standing one."""
    cancelled_orders: int
    flatten: FlattenReport | None
    already_halted: bool = False


def clean_reason(reason: str) -> str:
    """One line, at most ``MAX_REASON_CHARS``: a halt must always go through, so a long
    reason is cut rather than refused."""
    text = " ".join(reason.split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


class CommandService:
    def __init__(self, engine: TradingEngine) -> None:
        self._engine = engine

    # ---- read-only ---------------------------------------------------------------------

    async def status(self, actor: str, *, audit: bool = True) -> StatusReport:
        return await self._read(actor, "status", "", views.status_view, _short_status, audit)

    async def positions(self, actor: str, *, audit: bool = True) -> list[PositionView]:
        return await self._read(
            actor, "positions", "", views.position_views, _count("position"), audit
        )

    async def orders(self, actor: str, *, audit: bool = True) -> list[OrderView]:
        return await self._read(actor, "orders", "", views.order_views, _count("open order"), audit)

    async def pnl(self, actor: str, *, audit: bool = True) -> PnLReport:
        async def run() -> PnLReport:
            return await views.pnl_view(self._engine)

        return await self._audited(actor, "pnl", "", False, run, _short_pnl, audit)

    async def trades(
        self, actor: str, day: date | None = None, *, audit: bool = True
    ) -> list[TradeView]:
        """Trading day ``day``'s fills (default: today), newest first, with what each realized."""

        async def run() -> list[TradeView]:
            return await views.trade_views(self._engine, day)

        args = day.isoformat() if day else ""
        return await self._audited(actor, "trades", args, False, run, _count("fill"), audit)

    async def equity(self, actor: str, days: int = 1, *, audit: bool = True) -> list[EquityPoint]:
        """Equity snapshots of the last ``days`` calendar days (1: today), oldest first."""

        async def run() -> list[EquityPoint]:
            _check_range("days", days, MAX_EQUITY_DAYS)
            return await views.equity_points(self._engine, days)

        return await self._audited(actor, "equity", str(days), False, run, _count("point"), audit)

    async def audit(
        self, actor: str, limit: int | None = None, *, audit: bool = True
    ) -> list[AuditView]:
        """The newest ``limit`` (default ``DEFAULT_AUDIT_ROWS``) audited commands, newest
        first."""
        n = DEFAULT_AUDIT_ROWS if limit is None else limit

        async def run() -> list[AuditView]:
            _check_range("n", n, MAX_AUDIT_ROWS)
            return await views.audit_views(self._engine, n)

        args = "" if limit is None else str(limit)
        return await self._audited(actor, "audit", args, False, run, _count("row"), audit)

    async def flatten_preview(self, actor: str, *, audit: bool = True) -> FlattenPreview:
        return await self._read(
            actor, "flatten-preview", "", views.flatten_preview_view, lambda r: "shown", audit
        )

    async def resume_preview(self, actor: str, override: bool = False) -> ResumePreview:
        """What a resume would do. Refused (``CommandError``, audited as a refused
        ``resume``) when the resume itself would be."""
        args = "override" if override else ""
        try:
            self._check_resume(override)
        except CommandError as exc:
            await self.record_refused(actor, "resume", args, str(exc))
            raise
        return await self._read(
            actor, "resume-preview", args, views.resume_preview_view, lambda r: "shown"
        )

    # ---- control -----------------------------------------------------------------------

    async def halt(self, actor: str, reason: str = "", keep_positions: bool = False) -> HaltReport:
        reason = clean_reason(reason) or f"halted by {actor}"
        args = ("keep " if keep_positions else "") + reason

        async def run() -> HaltReport:
            before = self._engine.state.record
            result = await self._engine.halt(actor, reason, keep_positions=keep_positions)
            already = before.state is TradingState.HALTED and result.record == before
            return HaltReport(result.record, result.cancelled_orders, result.flatten, already)

        return await self._audited(actor, "halt", args, True, run, _short_halt)

    async def resume(self, actor: str, override: bool = False) -> ResumeReport:
        async def run() -> ResumeReport:
            self._check_resume(override)
            state = self._engine.state
            paused = bool(self._engine.strategies.paused)
            previous, record = state.state, state.record
            if previous is not TradingState.ACTIVE:
                reason = "resumed with loss-limit override" if override else "resumed"
                record = await state.resume(actor, reason, override=override)
            resumed = tuple(await self._engine.resume_strategies()) if paused else ()
            return ResumeReport(previous, record, resumed)

        args = "override" if override else ""
        return await self._audited(actor, "resume", args, True, run, _short_resume)

    async def flatten(self, actor: str, progress: ProgressCallback | None = None) -> FlattenReport:
        async def run() -> FlattenReport:
            return await self._engine.flatten(actor, progress)

        return await self._audited(actor, "flatten", "", True, run, _short_flatten)

    async def record_refused(self, actor: str, command: str, args: str, why: str) -> None:
        """Audit a control command that never reached the engine: refused by the
        permissions (``why`` starts with ``denied:``), a repeat ignored, a bad code..."""
        await self._record(actor, command, args, False, why, control=True)

    async def record_denied(self, actor: str, command: str, args: str, why: str) -> None:
        """Audit a command that was refused before reaching the engine (permissions)."""
        await self.record_refused(actor, command, args, f"denied: {why}")

    # ---- the rules -----------------------------------------------------------------------

    def _check_resume(self, override: bool) -> None:
        """Why a resume may not run now (raised), else nothing. Paused strategies are
        resumable even while ACTIVE."""
        e = self._engine
        if e.flattener.running:
            raise CommandError(FLATTEN_RUNNING)
        if e.state.state is TradingState.ACTIVE and not e.strategies.paused:
            raise CommandError(ALREADY_ACTIVE)
        if e.state.loss_limit_locked and not override:
            raise CommandError(LOSS_LIMIT_LOCKED)

    # ---- implementation ----------------------------------------------------------------

    async def _read(
        self,
        actor: str,
        command: str,
        args: str,
        build: Callable[[TradingEngine], R],
        describe: Callable[[R], str],
        audit: bool = True,
    ) -> R:
        async def run() -> R:
            return build(self._engine)

        return await self._audited(actor, command, args, False, run, describe, audit)

    async def _audited(
        self,
        actor: str,
        command: str,
        args: str,
        control: bool,
        run: Callable[[], Awaitable[R]],
        describe: Callable[[R], str],
        audit: bool = True,
    ) -> R:
        if not audit:
            return await run()
        try:
            result = await run()
        except DomainError as exc:
            await self._record(actor, command, args, False, str(exc), control)
            raise
        except Exception as exc:
            log.exception("command %s by %s failed", command, actor)
            await self._record(actor, command, args, False, f"internal error: {exc}", control)
            raise
        await self._record(actor, command, args, True, describe(result), control)
        return result

    async def _record(
        self, actor: str, command: str, args: str, ok: bool, result: str, control: bool
    ) -> None:
        now = self._engine.clock.now()
        try:
            if control:  # durable before the reply
                await self._engine.journal.record_audit(actor, command, args, ok, result, now)
            else:  # a read: written behind the reply
                self._engine.journal.record_audit_later(actor, command, args, ok, result, now)
        except Exception:
            log.exception("audit write failed for %s by %s", command, actor)
        self._engine.bus.publish(
            CommandAudited(
                ts=now,
                actor=actor,
                command=command,
                args=args,
                ok=ok,
                result=result,
                control=control,
            )
        )


def _check_range(name: str, value: int, most: int) -> None:
    if not 1 <= value <= most:
        raise CommandError(f"{name} must be a whole number from 1 to {most}.")


def count(n: int, noun: str, plural: str = "") -> str:
    """``1 position``, ``3 positions``, ``0 positions``: every count shown to the trader (the
    audit rows here, the chat and console texts in ``bot.text``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _count(noun: str) -> Callable[[Sequence[object]], str]:
    return lambda rows: count(len(rows), noun)


def _short_status(r: StatusReport) -> str:
    return f"{r.state.value}, equity {usd(r.equity)}, {count(r.positions, 'position')}"


def _short_resume(r: ResumeReport) -> str:
    strategies = f"; strategies {', '.join(r.strategies)} resumed" if r.strategies else ""
    return f"{r.previous.value} -> {r.record.state.value}{strategies}"


def _short_pnl(r: PnLReport) -> str:
    pnl = r.summary.day_pnl
    return "day P&L n/a" if pnl is None else f"day P&L {usd(pnl, signed=True)}"


def _short_halt(r: HaltReport) -> str:
    text = f"{'already ' if r.already_halted else ''}HALTED; {r.cancelled_orders} orders cancelled"
    if r.flatten is not None:
        text += "; " + _short_flatten(r.flatten)
    return text


def _short_flatten(r: FlattenReport) -> str:
    if r.flat:
        return f"flat in {r.elapsed_s:.1f} s"
    left = ", ".join(f"{o.symbol} {o.status}" for o in r.leftovers) or "open orders remain"
    return f"not flat after {r.elapsed_s:.1f} s: {left}"
