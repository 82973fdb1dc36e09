"""What the command service's calls return: plain dataclasses, and how each is read from the
engine. Discord, the console, the reports and the web page all render these; none of them
reads the engine itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from engine.clock import NEW_YORK, trading_day
from engine.domain import ZERO, OrderStatus, OrderType, Side, TradingState
from engine.engine import TradingEngine
from engine.portfolio import PnLSummary
from engine.risk import StateRecord
from engine.strategy.pnl import UNASSIGNED, StrategyPnL, pnl_by_strategy
from engine.trades import TradeView, day_trades

__all__ = [
    "AuditView",
    "BrokerStatus",
    "EquityPoint",
    "FeedStatus",
    "FlattenPreview",
    "OrderView",
    "PnLReport",
    "PositionView",
    "ResumePreview",
    "ResumeReport",
    "StatusReport",
    "TradeView",
]


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

    @property
    def nothing_to_flatten(self) -> bool:
        return not self.positions and not self.open_orders and not self.flatten_running


@dataclass(frozen=True, slots=True)
class ResumePreview:
    record: StateRecord
    loss_limit_locked: bool
    positions: int
    open_orders: int
    market_open: bool
    paused_strategies: tuple[str, ...] = ()
    """Strategies paused after an error: a resume starts them again, even when ACTIVE."""


@dataclass(frozen=True, slots=True)
class ResumeReport:
    previous: TradingState
    record: StateRecord
    strategies: tuple[str, ...] = ()
    """Strategies paused after an error that this resume started again."""


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """Account equity at ``ts`` (the journal's snapshots, about one a minute)."""

    ts: datetime
    equity: Decimal
    cash: Decimal
    day_pnl: Decimal | None


@dataclass(frozen=True, slots=True)
class AuditView:
    """One command someone ran (or was refused), as the journal's audit trail keeps it."""

    ts: datetime
    actor: str
    """Who, as recorded: ``discord:<id> (<name>)``, ``console``, ``scheduler``..."""
    command: str
    args: str
    ok: bool
    result: str


# ---- reading them from the engine ------------------------------------------------------------


def status_view(e: TradingEngine) -> StatusReport:
    record = e.state.record
    summary = e.portfolio.summary()
    pct = None
    if summary.day_pnl is not None and summary.day_start_equity:
        pct = summary.day_pnl / summary.day_start_equity * 100
    mono = e.clock.monotonic()
    health = e.feed.health
    age = None if health.last_message_mono is None else max(0.0, mono - health.last_message_mono)
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


def position_views(e: TradingEngine) -> list[PositionView]:
    views = []
    owners = e.strategies.owners
    for p in e.portfolio.positions():
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


def order_views(e: TradingEngine) -> list[OrderView]:
    now = e.clock.now()
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
        for o in sorted(e.orders.open_orders(), key=lambda o: o.created_at)
    ]


async def pnl_view(e: TradingEngine) -> PnLReport:
    now = e.clock.now()
    curve = [(p.ts, p.equity) for p in await equity_points(e, days=1)]
    summary = e.portfolio.summary()
    curve.append((now, summary.equity))
    host = e.strategies
    by_strategy = pnl_by_strategy(summary, e.portfolio, host.owners, order=list(host.specs))
    return PnLReport(summary=summary, curve=curve, by_strategy=by_strategy)


def flatten_preview_view(e: TradingEngine) -> FlattenPreview:
    positions = position_views(e)
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


def resume_preview_view(e: TradingEngine) -> ResumePreview:
    return ResumePreview(
        record=e.state.record,
        loss_limit_locked=e.state.loss_limit_locked,
        positions=len(e.portfolio.positions()),
        open_orders=len(e.orders.open_orders()),
        market_open=e.market.is_open(e.clock.now()),
        paused_strategies=tuple(e.strategies.paused),
    )


async def equity_points(e: TradingEngine, days: int) -> list[EquityPoint]:
    """Snapshots from midnight New York ``days - 1`` days before today's trading day, oldest
    first."""
    now = e.clock.now()
    first = trading_day(now) - timedelta(days=days - 1)
    since = datetime.combine(first, time(0), NEW_YORK) - timedelta(seconds=1)
    return [
        EquityPoint(s.ts, s.equity, s.cash, s.day_pnl)
        for s in await e.journal.equity_snapshots(since=since)
        if s.ts <= now
    ]


async def trade_views(e: TradingEngine, day: date | None) -> list[TradeView]:
    """Trading day ``day``'s fills (default: today), newest first."""
    fills = await e.journal.load_fills()
    return day_trades(fills, day or trading_day(e.clock.now()))[::-1]


async def audit_views(e: TradingEngine, limit: int) -> list[AuditView]:
    """The newest ``limit`` audit rows, newest first."""
    return [
        AuditView(r.ts, r.actor, r.command, r.args, r.ok, r.result)
        for r in await e.journal.audit_rows(limit=limit)
    ]
