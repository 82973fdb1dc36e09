"""The one implementation of every trader command, used by Discord and the console alike.

Each call returns plain data or raises a ``DomainError`` whose message is fit for the trader's
screen, and each call is audited (who, when, what, result) in the journal. Control commands
are also published so the alert router can echo them to system-alerts. The scheduled reports
read with ``audit=False``: a heartbeat every few minutes is no trader's command.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TypeVar

from engine.clock import NEW_YORK, trading_day
from engine.control import HaltResult
from engine.domain import ZERO, OrderStatus, OrderType, Side, TradingState, usd
from engine.engine import TradingEngine
from engine.errors import CommandError, DomainError
from engine.events import CommandAudited
from engine.flatten import FlattenReport, ProgressCallback
from engine.portfolio import PnLSummary
from engine.risk import StateRecord
from engine.strategy.pnl import UNASSIGNED, StrategyPnL, pnl_by_strategy
from engine.trades import TradeView, day_trades

log = logging.getLogger(__name__)
R = TypeVar("R")

MAX_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    qty: Decimal
    avg_price: Decimal
    last_price: Decimal | None
    market_value: Decimal
    unrealized_pnl: Decimal
    unrealized_pct: Decimal | None
    strategy: str = ""
    """The strategy trading this symbol; empty: none does (adopted or opened by hand)."""


@dataclass(frozen=True, slots=True)
class OrderView:
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    filled_qty: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    status: OrderStatus
    created_at: datetime
    age_s: float
    strategy: str


@dataclass(frozen=True, slots=True)
class FeedStatus:
    connected: bool
    last_message_age_s: float | None
    messages: int
    malformed: int
    reconnects: int
    finished: bool
    detail: str


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    name: str
    ok: bool
    round_trip_ms: float | None
    last_error: str
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    state: TradingState
    state_actor: str
    state_reason: str
    state_cause: str
    state_since: datetime
    loss_limit_locked: bool
    mode: str
    equity: Decimal
    cash: Decimal
    day_pnl: Decimal | None
    day_pnl_pct: Decimal | None
    gross_exposure: Decimal
    net_exposure: Decimal
    positions: int
    open_orders: int
    market_open: bool
    feed: FeedStatus
    broker: BrokerStatus
    last_heartbeat: datetime | None
    uptime_s: float
    loop_lag_p99_ms: float | None
    dropped_updates: int
    flatten_running: bool
    now: datetime
    day: date | None = None
    """The engine's trading day (in a replay, the replayed day); None before the first."""
    last_reconcile: str | None = None
    reconcile_clean: bool | None = None
    clean_last_shutdown: bool | None = None
    """None on the journal's first start."""


@dataclass(frozen=True, slots=True)
class PnLReport:
    summary: PnLSummary
    curve: list[tuple[datetime, Decimal]]
    """Equity through the trading day, oldest first, ending with the current value."""
    by_strategy: list[StrategyPnL] = field(default_factory=list)
    """The book grouped by the strategy owning each symbol (unowned ones last, as "")."""


@dataclass(frozen=True, slots=True)
class FlattenPreview:
    state: TradingState
    positions: list[PositionView]
    open_orders: int
    gross_notional: Decimal
    market_open: bool
    next_open: datetime | None
    flatten_running: bool


@dataclass(frozen=True, slots=True)
class ResumePreview:
    record: StateRecord
    loss_limit_locked: bool
    positions: int
    open_orders: int
    market_open: bool


@dataclass(frozen=True, slots=True)
class ResumeReport:
    previous: TradingState
    record: StateRecord
    strategies: tuple[str, ...] = ()
    """Strategies paused after an error that this resume started again."""


class CommandService:
    def __init__(self, engine: TradingEngine) -> None:
        self._engine = engine

    # ---- read-only ---------------------------------------------------------------------

    async def status(self, actor: str, *, audit: bool = True) -> StatusReport:
        return await self._audited(actor, "status", "", False, self._status, _short_status, audit)

    async def positions(self, actor: str) -> list[PositionView]:
        return await self._audited(
            actor, "positions", "", False, self._positions, lambda r: f"{len(r)} positions"
        )

    async def orders(self, actor: str) -> list[OrderView]:
        return await self._audited(
            actor, "orders", "", False, self._orders, lambda r: f"{len(r)} open orders"
        )

    async def pnl(self, actor: str, *, audit: bool = True) -> PnLReport:
        return await self._audited(actor, "pnl", "", False, self._pnl, _short_pnl, audit)

    async def trades(
        self, actor: str, day: date | None = None, *, audit: bool = True
    ) -> list[TradeView]:
        """Trading day ``day``'s fills (default: today), oldest first, with what each realized."""

        async def run() -> list[TradeView]:
            fills = await self._engine.journal.load_fills()
            return day_trades(fills, day or trading_day(self._engine.clock.now()))

        args = day.isoformat() if day else ""
        return await self._audited(actor, "trades", args, False, run, _short_trades, audit)

    async def flatten_preview(self, actor: str) -> FlattenPreview:
        return await self._audited(
            actor, "flatten-preview", "", False, self._flatten_preview, lambda r: "shown"
        )

    async def resume_preview(self, actor: str) -> ResumePreview:
        return await self._audited(
            actor, "resume-preview", "", False, self._resume_preview, lambda r: "shown"
        )

    # ---- control -----------------------------------------------------------------------

    async def halt(self, actor: str, reason: str = "", keep_positions: bool = False) -> HaltResult:
        reason = _clean_reason(reason) or f"halted by {actor}"
        args = ("keep " if keep_positions else "") + reason

        async def run() -> HaltResult:
            return await self._engine.halt(actor, reason, keep_positions=keep_positions)

        return await self._audited(actor, "halt", args, True, run, _short_halt)

    async def resume(self, actor: str, override: bool = False) -> ResumeReport:
        async def run() -> ResumeReport:
            state = self._engine.state
            if self._engine.flattener.running:
                raise CommandError("A flatten is running; resume when it has finished.")
            paused = bool(self._engine.strategies.paused)
            if state.state is TradingState.ACTIVE and not paused:
                raise CommandError("Trading is already ACTIVE.")
            previous, record = state.state, state.record
            if previous is not TradingState.ACTIVE:
                reason = "resumed with loss-limit override" if override else "resumed"
                record = await state.resume(actor, reason, override=override)
            resumed = tuple(await self._engine.resume_strategies()) if paused else ()
            return ResumeReport(previous, record, resumed)

        return await self._audited(
            actor,
            "resume",
            "override" if override else "",
            True,
            run,
            _short_resume,
        )

    async def flatten(self, actor: str, progress: ProgressCallback | None = None) -> FlattenReport:
        async def run() -> FlattenReport:
            return await self._engine.flatten(actor, progress)

        return await self._audited(actor, "flatten", "", True, run, _short_flatten)

    async def record_denied(self, actor: str, command: str, args: str, why: str) -> None:
        """Audit a command that was refused before reaching the engine (permissions)."""
        await self._record(actor, command, args, False, f"denied: {why}", control=True)

    # ---- implementation ----------------------------------------------------------------

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
            await self._engine.journal.record_audit(actor, command, args, ok, result, now)
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

    async def _status(self) -> StatusReport:
        e = self._engine
        record = e.state.record
        summary = e.portfolio.summary()
        pct = None
        if summary.day_pnl is not None and summary.day_start_equity:
            pct = summary.day_pnl / summary.day_start_equity * 100
        mono = e.clock.monotonic()
        health = e.feed.health
        age = (
            None if health.last_message_mono is None else max(0.0, mono - health.last_message_mono)
        )
        lag = e.loop_lag.percentile(99)
        rtt = e.broker_health.round_trip_s
        return StatusReport(
            state=record.state,
            state_actor=record.actor,
            state_reason=record.reason,
            state_cause=record.cause,
            state_since=record.ts,
            loss_limit_locked=e.state.loss_limit_locked,
            mode=e.mode,
            equity=summary.equity,
            cash=e.portfolio.cash,
            day_pnl=summary.day_pnl,
            day_pnl_pct=pct,
            gross_exposure=summary.gross_exposure,
            net_exposure=summary.net_exposure,
            positions=len(e.portfolio.positions()),
            open_orders=len(e.orders.open_orders()),
            market_open=e.market.is_open(e.clock.now()),
            feed=FeedStatus(
                connected=health.connected,
                last_message_age_s=age,
                messages=health.messages,
                malformed=health.malformed,
                reconnects=health.reconnects,
                finished=health.finished,
                detail=health.detail,
            ),
            broker=BrokerStatus(
                name=e.broker.name,
                ok=e.broker_health.ok,
                round_trip_ms=None if rtt is None else rtt * 1000,
                last_error=e.broker_health.last_error,
                consecutive_failures=e.broker_health.consecutive_failures,
            ),
            last_heartbeat=e.last_heartbeat,
            uptime_s=e.uptime_s,
            loop_lag_p99_ms=None if lag is None else lag * 1000,
            dropped_updates=e.dropped_updates,
            flatten_running=e.flattener.running,
            now=e.clock.now(),
            day=e.portfolio.day,
            last_reconcile=e.last_reconcile.summary() if e.last_reconcile else None,
            reconcile_clean=e.last_reconcile.clean if e.last_reconcile else None,
            clean_last_shutdown=e.clean_last_shutdown,
        )

    async def _positions(self) -> list[PositionView]:
        views = []
        owners = self._engine.strategies.owners
        for p in self._engine.portfolio.positions():
            cost = abs(p.qty * p.avg_price)
            pct = p.unrealized_pnl / cost * 100 if cost and p.last_price is not None else None
            views.append(
                PositionView(
                    symbol=p.symbol,
                    qty=p.qty,
                    avg_price=p.avg_price,
                    last_price=p.last_price,
                    market_value=p.market_value,
                    unrealized_pnl=p.unrealized_pnl,
                    unrealized_pct=pct,
                    strategy=owners.get(p.symbol, UNASSIGNED),
                )
            )
        return views

    async def _orders(self) -> list[OrderView]:
        now = self._engine.clock.now()
        return [
            OrderView(
                client_order_id=o.client_order_id,
                symbol=o.symbol,
                side=o.side,
                qty=o.qty,
                filled_qty=o.filled_qty,
                order_type=o.order_type,
                limit_price=o.limit_price,
                status=o.status,
                created_at=o.created_at,
                age_s=max(0.0, (now - o.created_at).total_seconds()),
                strategy=o.strategy,
            )
            for o in sorted(self._engine.orders.open_orders(), key=lambda o: o.created_at)
        ]

    async def _pnl(self) -> PnLReport:
        e = self._engine
        now = e.clock.now()
        day_start = datetime.combine(trading_day(now), time(0), NEW_YORK)
        snapshots = await e.journal.equity_snapshots(since=day_start - timedelta(seconds=1))
        curve = [(s.ts, s.equity) for s in snapshots if s.ts <= now]
        summary = e.portfolio.summary()
        curve.append((now, summary.equity))
        host = e.strategies
        by_strategy = pnl_by_strategy(summary, e.portfolio, host.owners, order=list(host.specs))
        return PnLReport(summary=summary, curve=curve, by_strategy=by_strategy)

    async def _flatten_preview(self) -> FlattenPreview:
        e = self._engine
        positions = await self._positions()
        now = e.clock.now()
        return FlattenPreview(
            state=e.state.state,
            positions=positions,
            open_orders=len(e.orders.open_orders()),
            gross_notional=sum((abs(p.market_value) for p in positions), ZERO),
            market_open=e.market.is_open(now),
            next_open=e.market.next_open(now),
            flatten_running=e.flattener.running,
        )

    async def _resume_preview(self) -> ResumePreview:
        e = self._engine
        return ResumePreview(
            record=e.state.record,
            loss_limit_locked=e.state.loss_limit_locked,
            positions=len(e.portfolio.positions()),
            open_orders=len(e.orders.open_orders()),
            market_open=e.market.is_open(e.clock.now()),
        )


def _clean_reason(reason: str) -> str:
    """One line, at most ``MAX_REASON_CHARS``: a halt must always go through, so a long
    reason is cut rather than refused."""
    text = " ".join(reason.split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


def _short_status(r: StatusReport) -> str:
    return f"{r.state.value}, equity {usd(r.equity)}, {r.positions} positions"


def _short_resume(r: ResumeReport) -> str:
    strategies = f"; strategies {', '.join(r.strategies)} resumed" if r.strategies else ""
    return f"{r.previous.value} -> {r.record.state.value}{strategies}"


def _short_trades(r: list[TradeView]) -> str:
    return f"{len(r)} fills"


def _short_pnl(r: PnLReport) -> str:
    pnl = r.summary.day_pnl
    return "day P&L n/a" if pnl is None else f"day P&L {usd(pnl, signed=True)}"


def _short_halt(r: HaltResult) -> str:
    text = f"HALTED; {r.cancelled_orders} orders cancelled"
    if r.flatten is not None:
        text += "; " + _short_flatten(r.flatten)
    return text


def _short_flatten(r: FlattenReport) -> str:
    if r.flat:
        return f"flat in {r.elapsed_s:.1f} s"
    left = ", ".join(f"{o.symbol} {o.status}" for o in r.leftovers) or "open orders remain"
    return f"not flat after {r.elapsed_s:.1f} s: {left}"
