"""Scheduled and lifecycle reports: what they say and where their numbers come from.

Each report reads through the command service's read calls (with ``audit=False``: no trader
asked) and is rendered into an ``AlertMessage`` with short, phone-friendly lines by a pure
function of what was read. The jobs publish them through the ``AlertRouter``, for the console
and the Discord bot alike.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from bot import fmt
from bot.messages import AlertMessage, Channel
from bot.text import STATE_ICON, who
from config.settings import RiskSettings
from engine.commands import CommandService, PnLReport, StatusReport, count
from engine.domain import ZERO, TradingSession, TradingState
from engine.events import Severity
from engine.portfolio import PnLSummary
from engine.trades import TradeView

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


def heartbeat_message(d: StatusReport) -> AlertMessage:
    if d.feed.finished:
        data = "replay done"
    elif d.feed.last_message_age_s is None:
        data = "no data yet"
    else:
        data = f"{fmt.duration(d.feed.last_message_age_s)} ago"
    b = d.broker
    broker = fmt.millis(b.round_trip_ms) if b.ok else f"FAILING x{b.consecutive_failures}"
    market = "open" if d.market_open else "closed"
    text = "\n".join(
        [
            f"💓 {_state_word(d.state)} · up {fmt.duration(d.uptime_s)} · market {market}",
            f"Equity {fmt.money(d.equity)} · day {fmt.signed_money(d.day_pnl)}"
            f" ({fmt.pct(d.day_pnl_pct)})",
            f"{count(d.positions, 'position')} · {count(d.open_orders, 'open order')}",
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


def market_open_message(
    status: StatusReport, pnl: PnLReport, risk: RiskSettings, session: TradingSession
) -> AlertMessage:
    close = fmt.et_time(session.close).removesuffix(":00 ET") + " ET"
    when = f"early close {close}" if session.early_close else f"closes {close}"
    start = fmt.money(pnl.summary.day_start_equity)
    lines = [
        f"🔔 Market open · {session.day:%a %b %d} ({when})",
        f"Starting equity {start} · {_state_word(status.state)}",
        limits_line(risk),
    ]
    if status.state is not TradingState.ACTIVE:
        lines.append(
            f"Trading is {status.state.value} (by {who(status.state_actor)}: {status.state_reason})"
        )
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


def day_trade_stats(trades: Iterable[TradeView]) -> DayTradeStats:
    """One trading day's fills (the command service's ``trades``) as trades: an order that
    reduced or closed a position is one trade, its partial fills summed; win rate counts
    those with a positive realized P&L."""
    count = 0
    fees = ZERO
    realized: dict[str, Decimal] = {}
    symbols: dict[str, str] = {}
    for trade in trades:
        count += 1
        fees += trade.commission
        if trade.closing:
            key = trade.client_order_id
            realized[key] = realized.get(key, ZERO) + trade.realized_pnl
            symbols[key] = trade.symbol
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


async def gather_end_of_day(
    commands: CommandService, session: TradingSession, actor: str
) -> EndOfDayData:
    """About the engine's current trading day: it rolls at midnight and on the first bar, so
    in live trading that is ``session``'s day (in a replay, the replayed day)."""
    status = await commands.status(actor, audit=False)
    pnl = await commands.pnl(actor, audit=False)
    day = status.day or session.day
    return EndOfDayData(
        day=day,
        early_close=session.early_close and day == session.day,
        summary=pnl.summary,
        stats=day_trade_stats(await commands.trades(actor, day, audit=False)),
        state=status.state,
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
        trades = f"Trades {st.trades} closed ({count(st.fills, 'fill')}) · win rate {rate}"
    else:
        trades = f"No closed trades ({count(st.fills, 'fill')})"
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


def boot_message(s: StatusReport) -> AlertMessage:
    """After ``app.start()``: version, mode, restored state, reconcile, last shutdown."""
    clean = s.clean_last_shutdown
    lines = [
        f"🚀 Started {PACKAGE} {app_version()} · mode {s.mode}",
        f"State {_state_word(s.state)} (by {who(s.state_actor)}, "
        f"{fmt.et_datetime(s.state_since)}: {s.state_reason})",
        f"Reconcile: {s.last_reconcile or 'not run'}",
    ]
    if clean is None:
        lines.append("First start (no previous shutdown recorded)")
    elif clean:
        lines.append("Last shutdown was clean")
    else:
        lines.append("⚠️ Last shutdown was NOT clean (crash or kill): state rebuilt from broker")
    worrying = clean is False or s.state is not TradingState.ACTIVE or s.reconcile_clean is False
    severity = Severity.WARNING if worrying else Severity.INFO
    return AlertMessage(Channel.SYSTEM_ALERTS, severity, "\n".join(lines), "boot", title="Started")


def shutdown_message(s: StatusReport, reason: str = "") -> AlertMessage:
    """Before a graceful ``app.stop()``."""
    positions, open_orders = s.positions, s.open_orders
    why = f" ({reason})" if reason else ""
    text = (
        f"⏹️ Going down{why} · {_state_word(s.state)} · {count(positions, 'position')} · "
        f"{count(open_orders, 'open order')} · up {fmt.duration(s.uptime_s)}"
    )
    if positions or open_orders:
        text += "\nPositions and orders stay at the broker while the bot is down."
    return AlertMessage(Channel.SYSTEM_ALERTS, Severity.INFO, text, "shutdown", title="Stopping")


# ---- the end of a replay (sim mode) ----------------------------------------------------


def replay_end_message(s: StatusReport, data_dir: Path) -> AlertMessage:
    """The replay has played its last bar: its market is over."""
    text = (
        f"⏹️ Replay finished: the replayed market stopped at {fmt.et_datetime(s.now)} "
        f"({s.feed.messages} bars). The simulator keeps its cash and positions, so a restart "
        f"finds nothing left to replay; for a fresh day, start with an empty data dir "
        f"(this one is {data_dir})."
    )
    return AlertMessage(Channel.SYSTEM_ALERTS, Severity.INFO, text, "replay-end", title="Replay")


def replay_over_message(s: StatusReport, data_dir: Path) -> AlertMessage:
    """A start whose replay had already ended: how to get a fresh day."""
    text = (
        f"⏹️ Nothing left to replay: the replay in {data_dir} ended in an earlier run (its "
        f"market stopped at {fmt.et_datetime(s.now)}). For a fresh day, stop and start with "
        f"an empty data dir: delete {data_dir}, or pass --data-dir (or STORAGE_DATA_DIR) a new one."
    )
    return AlertMessage(Channel.SYSTEM_ALERTS, Severity.INFO, text, "replay-over", title="Replay")
