"""Scheduled and lifecycle reports: what they say and where their numbers come from.

Each report is gathered into a small dataclass (plain reads of the engine; no broker calls)
and rendered into an ``AlertMessage`` with short, phone-friendly lines. The jobs, the console
and the Discord bot publish them through the ``AlertRouter``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from bot import fmt
from bot.messages import AlertMessage, Channel
from bot.text import STATE_ICON
from config.settings import RiskSettings
from engine.app import EngineApp
from engine.clock import trading_day
from engine.commands import PnLReport
from engine.domain import ZERO, Fill, TradingSession, TradingState
from engine.events import Severity
from engine.portfolio import PnLSummary, Portfolio

PACKAGE = "discord-trader"


def app_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def _pct(part: Decimal | None, whole: Decimal | None) -> Decimal | None:
    if part is None or not whole:
        return None
    return part / whole * 100


def _state_word(state: TradingState) -> str:
    return f"{STATE_ICON.get(state.value, '')} {state.value}".strip()


# ---- heartbeat -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeartbeatData:
    state: TradingState
    uptime_s: float
    equity: Decimal
    day_pnl: Decimal | None
    day_pnl_pct: Decimal | None
    positions: int
    open_orders: int
    market_open: bool
    data_age_s: float | None
    """Seconds since the last market-data message; None when none arrived yet."""
    data_finished: bool
    broker_ok: bool
    broker_rtt_ms: float | None
    broker_failures: int
    loop_lag_p99_ms: float | None
    dropped_updates: int


def gather_heartbeat(app: EngineApp) -> HeartbeatData:
    e = app.engine
    health = e.feed.health
    mono = e.clock.monotonic()
    last = health.last_message_mono
    rtt = e.broker_health.round_trip_s
    lag = e.loop_lag.percentile(99)
    day_pnl = e.portfolio.day_pnl
    return HeartbeatData(
        state=e.state.state,
        uptime_s=e.uptime_s,
        equity=e.portfolio.equity,
        day_pnl=day_pnl,
        day_pnl_pct=_pct(day_pnl, e.portfolio.day_start_equity),
        positions=len(e.portfolio.positions()),
        open_orders=len(e.orders.open_orders()),
        market_open=e.market.is_open(e.clock.now()),
        data_age_s=None if last is None else max(0.0, mono - last),
        data_finished=health.finished,
        broker_ok=e.broker_health.ok,
        broker_rtt_ms=None if rtt is None else rtt * 1000,
        broker_failures=e.broker_health.consecutive_failures,
        loop_lag_p99_ms=None if lag is None else lag * 1000,
        dropped_updates=e.dropped_updates,
    )


def heartbeat_message(d: HeartbeatData) -> AlertMessage:
    if d.data_finished:
        data = "replay done"
    elif d.data_age_s is None:
        data = "no data yet"
    else:
        data = f"{fmt.duration(d.data_age_s)} ago"
    broker = fmt.millis(d.broker_rtt_ms) if d.broker_ok else f"FAILING x{d.broker_failures}"
    market = "open" if d.market_open else "closed"
    text = "\n".join(
        [
            f"💓 {_state_word(d.state)} · up {fmt.duration(d.uptime_s)} · market {market}",
            f"Equity {fmt.money(d.equity)} · day {fmt.signed_money(d.day_pnl)}"
            f" ({fmt.pct(d.day_pnl_pct)})",
            f"{d.positions} positions · {d.open_orders} open orders",
            f"Data {data} · broker {broker} · loop p99 {fmt.millis(d.loop_lag_p99_ms)}"
            f" · dropped {d.dropped_updates}",
        ]
    )
    return AlertMessage(Channel.HEARTBEAT, Severity.INFO, text, "heartbeat", title="Heartbeat")


# ---- market open -----------------------------------------------------------------------


def limits_line(risk: RiskSettings) -> str:
    return (
        f"Limits: daily loss {fmt.money(risk.daily_loss_limit)} · position "
        f"{fmt.qty(risk.max_position_qty)} sh / {fmt.money(risk.max_position_notional)} · "
        f"gross {fmt.money(risk.max_gross_exposure)} · order "
        f"{fmt.money(risk.max_order_notional)} · {risk.max_orders_per_day} orders/day"
    )


def market_open_message(app: EngineApp, session: TradingSession) -> AlertMessage:
    e = app.engine
    close = fmt.et_time(session.close).removesuffix(":00 ET") + " ET"
    when = f"early close {close}" if session.early_close else f"closes {close}"
    lines = [
        f"🔔 Market open · {session.day:%a %b %d} ({when})",
        f"Starting equity {fmt.money(e.portfolio.day_start_equity)} · {_state_word(e.state.state)}",
        limits_line(app.settings.risk),
    ]
    record = e.state.record
    if record.state is not TradingState.ACTIVE:
        lines.append(f"Trading is {record.state.value} (by {record.actor}: {record.reason})")
    return AlertMessage(
        Channel.REPORTS, Severity.INFO, "\n".join(lines), "market-open", title="Market open"
    )


# ---- end of day ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TradeResult:
    """One closing order's realized P&L (gross of fees), its partial fills summed."""

    symbol: str
    client_order_id: str
    realized: Decimal


@dataclass(frozen=True, slots=True)
class DayTradeStats:
    fills: int
    fees: Decimal
    results: list[TradeResult]
    """Closing orders of the day in the order they first filled."""

    @property
    def trades(self) -> int:
        return len(self.results)

    @property
    def wins(self) -> int:
        return sum(1 for r in self.results if r.realized > 0)

    @property
    def win_rate_pct(self) -> Decimal | None:
        return None if not self.results else Decimal(self.wins) / Decimal(self.trades) * 100

    @property
    def best(self) -> TradeResult | None:
        best = max(self.results, key=lambda r: r.realized, default=None)
        return best if best is not None and best.realized > 0 else None

    @property
    def worst(self) -> TradeResult | None:
        worst = min(self.results, key=lambda r: r.realized, default=None)
        return worst if worst is not None and worst.realized < 0 else None


def day_trade_stats(fills: Iterable[Fill], day: date) -> DayTradeStats:
    """Replay every fill (older ones give the cost basis of carried positions) under the
    engine's average-cost accounting and collect the trading day ``day``'s closing orders.

    A trade is an order that reduced or closed a position; win rate counts those with a
    positive realized P&L.
    """
    book = Portfolio()
    count = 0
    fees = ZERO
    realized: dict[str, Decimal] = {}
    symbols: dict[str, str] = {}
    for fill in sorted(fills, key=lambda f: f.ts):
        before = book.qty(fill.symbol)
        pnl = book.apply_fill(fill)
        if trading_day(fill.ts) != day:
            continue
        count += 1
        fees += fill.commission
        closing = before != 0 and (before > 0) != (fill.signed_qty > 0)
        if closing:
            key = fill.client_order_id
            realized[key] = realized.get(key, ZERO) + pnl
            symbols[key] = fill.symbol
    results = [TradeResult(symbols[k], k, v) for k, v in realized.items()]
    return DayTradeStats(fills=count, fees=fees, results=results)


@dataclass(frozen=True, slots=True)
class EndOfDayData:
    day: date
    early_close: bool
    summary: PnLSummary
    stats: DayTradeStats
    state: TradingState
    pnl: PnLReport
    """The day's P&L with its equity curve (for the chart)."""


async def gather_end_of_day(app: EngineApp, session: TradingSession, actor: str) -> EndOfDayData:
    """About the engine's current trading day: it rolls at midnight and on the first bar, so
    in live trading that is ``session``'s day (in a replay, the replayed day)."""
    pnl = await app.commands.pnl(actor)
    day = app.engine.portfolio.day or session.day
    stats = day_trade_stats(await app.journal.load_fills(), day)
    return EndOfDayData(
        day=day,
        early_close=session.early_close and day == session.day,
        summary=pnl.summary,
        stats=stats,
        state=app.engine.state.state,
        pnl=pnl,
    )


def equity_png_name(day: date) -> str:
    """The file name of a day's equity chart: the end-of-day attachment, the console's file."""
    return f"equity-{day.isoformat()}.png"


def end_of_day_message(d: EndOfDayData, chart_png: bytes | None = None) -> AlertMessage:
    s = d.summary
    st = d.stats
    label = f"{d.day:%a %b %d}" + (" (early close)" if d.early_close else "")
    if st.trades:
        rate = fmt.pct(st.win_rate_pct).lstrip("+")
        trades = f"Trades {st.trades} closed ({st.fills} fills) · win rate {rate}"
    else:
        trades = f"No closed trades ({st.fills} fills)"
    best = st.best
    worst = st.worst
    lines = [
        f"📊 End of day · {label}",
        f"Day P&L {fmt.signed_money(s.day_pnl)} ({fmt.pct(_pct(s.day_pnl, s.day_start_equity))})"
        f" · equity {fmt.money(s.equity)}",
        f"{trades} · fees {fmt.money(st.fees)}",
        "Best "
        + (f"{best.symbol} {fmt.signed_money(best.realized)}" if best else "none")
        + " · worst "
        + (f"{worst.symbol} {fmt.signed_money(worst.realized)}" if worst else "none"),
        f"Realized {fmt.signed_money(s.day_realized)} · "
        f"unrealized {fmt.signed_money(s.unrealized)}",
    ]
    carried = [row for row in s.by_symbol if row.qty != 0]
    if carried:
        lines.append(
            "Holding overnight: "
            + ", ".join(f"{row.symbol} {fmt.signed_qty(row.qty)}" for row in carried[:5])
            + (f" +{len(carried) - 5} more" if len(carried) > 5 else "")
        )
    if d.state is not TradingState.ACTIVE:
        lines.append(f"Trading is {_state_word(d.state)}")
    return AlertMessage(
        Channel.REPORTS,
        Severity.INFO,
        "\n".join(lines),
        "end-of-day",
        title=f"End of day {d.day.isoformat()}",
        attachment=chart_png,
        attachment_name=equity_png_name(d.day) if chart_png is not None else "",
    )


# ---- start and stop --------------------------------------------------------------------


def boot_message(app: EngineApp) -> AlertMessage:
    """After ``app.start()``: version, mode, restored state, reconcile, last shutdown."""
    e = app.engine
    record = e.state.record
    reconcile = e.last_reconcile
    clean = e.clean_last_shutdown
    lines = [
        f"🚀 Started {PACKAGE} {app_version()} · mode {app.settings.mode}",
        f"State {_state_word(record.state)} (by {record.actor}, "
        f"{fmt.et_datetime(record.ts)}: {record.reason})",
        f"Reconcile: {reconcile.summary() if reconcile else 'not run'}",
    ]
    if clean is None:
        lines.append("First start (no previous shutdown recorded)")
    elif clean:
        lines.append("Last shutdown was clean")
    else:
        lines.append("⚠️ Last shutdown was NOT clean (crash or kill): state rebuilt from broker")
    worrying = (
        clean is False
        or record.state is not TradingState.ACTIVE
        or (reconcile is not None and not reconcile.clean)
    )
    severity = Severity.WARNING if worrying else Severity.INFO
    return AlertMessage(Channel.SYSTEM_ALERTS, severity, "\n".join(lines), "boot", title="Started")


def shutdown_message(app: EngineApp, reason: str = "") -> AlertMessage:
    """Before a graceful ``app.stop()``."""
    e = app.engine
    positions = len(e.portfolio.positions())
    open_orders = len(e.orders.open_orders())
    why = f" ({reason})" if reason else ""
    text = (
        f"⏹️ Going down{why} · {_state_word(e.state.state)} · {positions} positions · "
        f"{open_orders} open orders · up {fmt.duration(e.uptime_s)}"
    )
    if positions or open_orders:
        text += "\nPositions and orders stay at the broker while the bot is down."
    return AlertMessage(Channel.SYSTEM_ALERTS, Severity.INFO, text, "shutdown", title="Stopping")
