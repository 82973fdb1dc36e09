"""Report contents: heartbeat, end of day (trade statistics), boot and going-down."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from bot import reports
from bot.messages import Channel
from engine.calendar import MarketCalendar
from engine.clock import SystemClock
from engine.commands import BrokerStatus, FeedStatus, PnLReport, StatusReport
from engine.domain import Fill, Side, TradingState
from engine.events import Severity
from engine.portfolio import PnLSummary, SymbolPnL
from engine.store.journal import Journal
from engine.trades import day_trades
from tests.support.app import sim_settings, start_app

DAY = date(2026, 11, 20)


def fill(cid: str, symbol: str, side: Side, qty: int, price: str, ts: datetime, fee: str = "1"):
    return Fill(
        execution_id=f"{cid}-{qty}-{price}",
        client_order_id=cid,
        broker_order_id=f"b-{cid}",
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        price=Decimal(price),
        ts=ts,
        commission=Decimal(fee),
    )


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


SAMPLE_FILLS = [
    fill("msft-open", "MSFT", Side.BUY, 10, "400", at(19, 15)),  # yesterday: cost basis only
    fill("aapl-open", "AAPL", Side.BUY, 10, "100", at(20, 15)),
    fill("aapl-close", "AAPL", Side.SELL, 10, "105", at(20, 16)),  # +50
    fill("msft-close", "MSFT", Side.SELL, 4, "390", at(20, 17), "0.5"),  # -40
    fill("msft-close", "MSFT", Side.SELL, 6, "391", at(20, 17, 1), "0.5"),  # -54
    fill("spy-open", "SPY", Side.BUY, 5, "600", at(20, 18)),
    fill("spy-close", "SPY", Side.SELL, 5, "610", at(21, 15)),  # tomorrow: not counted
]


def test_day_trades_when_fills_over_days_then_only_the_day_with_realized_pnl() -> None:
    trades = day_trades(SAMPLE_FILLS, DAY)

    assert [(t.client_order_id, t.closing, t.realized_pnl) for t in trades] == [
        ("aapl-open", False, Decimal(0)),
        ("aapl-close", True, Decimal(50)),
        ("msft-close", True, Decimal(-40)),  # against yesterday's cost basis
        ("msft-close", True, Decimal(-54)),
        ("spy-open", False, Decimal(0)),
    ]


def test_day_trade_stats_when_fills_over_days_then_hand_computed_numbers() -> None:
    stats = reports.day_trade_stats(day_trades(SAMPLE_FILLS, DAY))

    assert stats.fills == 5
    assert stats.fees == Decimal("4.0")
    assert [(r.symbol, r.realized) for r in stats.results] == [
        ("AAPL", Decimal(50)),
        ("MSFT", Decimal(-94)),
    ]
    assert stats.trades == 2
    assert stats.wins == 1
    assert stats.win_rate_pct == Decimal(50)
    assert stats.best is not None
    assert stats.best.symbol == "AAPL"
    assert stats.worst is not None
    assert stats.worst.realized == Decimal(-94)


def test_day_trade_stats_when_only_breakeven_close_then_no_best_or_worst() -> None:
    fills = [
        fill("o", "AAPL", Side.BUY, 10, "100", at(20, 15)),
        fill("c", "AAPL", Side.SELL, 10, "100", at(20, 16)),
    ]

    stats = reports.day_trade_stats(day_trades(fills, DAY))

    assert (stats.trades, stats.wins, stats.win_rate_pct) == (1, 0, Decimal(0))
    assert stats.best is None
    assert stats.worst is None


def summary(day_pnl: str, *, carried: int = 0) -> PnLSummary:
    rows = [
        SymbolPnL(
            "SPY",
            Decimal(carried),
            Decimal(600),
            None,
            Decimal(0),
            Decimal(0),
            Decimal(0),
            Decimal(0),
            Decimal(0),
        )
    ]
    return PnLSummary(
        realized=Decimal(-44),
        day_realized=Decimal(-44),
        unrealized=Decimal(0),
        commissions=Decimal(5),
        day_commissions=Decimal(4),
        equity=Decimal(100_000) + Decimal(day_pnl),
        day_start_equity=Decimal(100_000),
        day_pnl=Decimal(day_pnl),
        gross_exposure=Decimal(0),
        net_exposure=Decimal(0),
        by_symbol=rows if carried else [],
    )


def test_end_of_day_message_when_trades_then_every_figure_and_the_chart() -> None:
    s = summary("-48", carried=5)
    data = reports.EndOfDayData(
        day=DAY,
        early_close=False,
        summary=s,
        stats=reports.day_trade_stats(day_trades(SAMPLE_FILLS, DAY)),
        state=TradingState.ACTIVE,
        pnl=PnLReport(summary=s, curve=[]),
    )

    message = reports.end_of_day_message(data, b"\x89PNG")

    assert (message.channel, message.kind) == (Channel.REPORTS, "end-of-day")
    assert message.text.splitlines() == [
        "📊 End of day · Fri Nov 20",
        "Day P&L -$48.00 (-0.05%) · equity $99,952.00",
        "Trades 2 closed (5 fills) · win rate 50.00% · fees $4.00",
        "Best AAPL +$50.00 · worst MSFT -$94.00",
        "Realized -$44.00 · unrealized $0.00",
        "Holding overnight: SPY +5",
    ]
    assert message.attachment == b"\x89PNG"
    assert message.attachment_name == "equity-2026-11-20.png"


def test_end_of_day_message_when_half_day_without_trades_then_says_so() -> None:
    s = summary("0")
    data = reports.EndOfDayData(
        day=date(2026, 11, 27),
        early_close=True,
        summary=s,
        stats=reports.day_trade_stats([]),
        state=TradingState.HALTED,
        pnl=PnLReport(summary=s, curve=[]),
    )

    message = reports.end_of_day_message(data)

    lines = message.text.splitlines()
    assert lines[0] == "📊 End of day · Fri Nov 27 (early close)"
    assert lines[2] == "No closed trades (0 fills) · fees $0.00"
    assert lines[-1] == "Trading is 🔴 HALTED"
    assert message.attachment is None


def status(**changes: object) -> StatusReport:
    """A healthy engine's status, as the command service reads it."""
    base = StatusReport(
        state=TradingState.ACTIVE,
        state_actor="system",
        state_reason="startup",
        state_cause="manual",
        state_since=at(20, 14, 30),
        loss_limit_locked=False,
        mode="sim",
        equity=Decimal("100042.2"),
        cash=Decimal(90_000),
        day_pnl=Decimal("42.2"),
        day_pnl_pct=Decimal("0.0422"),
        gross_exposure=Decimal(10_000),
        net_exposure=Decimal(10_000),
        positions=1,
        open_orders=2,
        market_open=True,
        feed=FeedStatus(True, 3.2, 100, 0, 0, False, "replaying"),
        broker=BrokerStatus("sim", True, 12.4, "", 0),
        last_heartbeat=None,
        uptime_s=7500,
        loop_lag_p99_ms=1.6,
        dropped_updates=0,
        flatten_running=False,
        now=at(20, 16),
        day=DAY,
        last_reconcile="0 positions, 0 open orders, no drift",
        reconcile_clean=True,
        clean_last_shutdown=True,
    )
    return dataclasses.replace(base, **changes)


def test_heartbeat_message_when_healthy_then_four_compact_lines() -> None:
    message = reports.heartbeat_message(status())

    assert (message.channel, message.severity, message.kind) == (
        Channel.HEARTBEAT,
        Severity.INFO,
        "heartbeat",
    )
    assert message.text.splitlines() == [
        "💓 🟢 ACTIVE · up 2h 05m · market open",
        "Equity $100,042.20 · day +$42.20 (+0.04%)",
        "1 position · 2 open orders",
        "Data 3s ago · broker 12 ms · loop p99 2 ms · dropped 0",
    ]


def test_heartbeat_message_when_broker_failing_and_no_data_then_says_so() -> None:
    message = reports.heartbeat_message(
        status(
            broker=BrokerStatus("alpaca", False, None, "timeout", 3),
            feed=FeedStatus(False, None, 0, 0, 0, False, "connecting"),
            market_open=False,
        )
    )

    assert message.text.splitlines()[0].endswith("market closed")
    assert message.text.splitlines()[-1].startswith("Data no data yet · broker FAILING x3")


def test_market_open_message_when_half_day_then_early_close_and_limits(tmp_path: Path) -> None:
    settings = sim_settings(tmp_path, risk={"daily_loss_limit": "1500"})
    session = MarketCalendar().session(date(2026, 11, 27))
    assert session is not None

    pnl = PnLReport(summary=summary("0"), curve=[])

    message = reports.market_open_message(status(), pnl, settings.risk, session)

    assert message.channel is Channel.REPORTS
    assert message.text.splitlines() == [
        "🔔 Market open · Fri Nov 27 (early close 13:00 ET)",
        "Starting equity $100,000.00 · 🟢 ACTIVE",
        "Limits: daily loss $1,500.00 · position 1000 sh / $50,000.00 · gross $200,000.00"
        " · order $25,000.00 · 200 orders/day",
    ]


def test_app_version_when_installed_then_package_version() -> None:
    assert reports.app_version() == importlib.metadata.version("discord-trader")


async def test_boot_message_when_first_start_then_restart_then_clean_shutdown(
    tmp_path: Path,
) -> None:
    settings = sim_settings(tmp_path)
    app = await start_app(settings)
    try:
        first = reports.boot_message(await app.commands.status("t", audit=False))
        going = reports.shutdown_message(await app.commands.status("t", audit=False), "SIGTERM")
    finally:
        await app.stop()
    app = await start_app(settings, replay_done=False)
    try:
        second = reports.boot_message(await app.commands.status("t", audit=False))
    finally:
        await app.stop()
    journal = await Journal.open(settings.storage.db_path, SystemClock())
    try:
        audited = await journal.audit_rows()
    finally:
        await journal.close()

    version = reports.app_version()
    assert (first.channel, first.kind, first.severity) == (
        Channel.SYSTEM_ALERTS,
        "boot",
        Severity.INFO,
    )
    assert first.text.splitlines()[0] == f"🚀 Started discord-trader {version} · mode sim"
    assert "Reconcile: 0 positions, 0 open orders" in first.text
    assert first.text.splitlines()[-1] == "First start (no previous shutdown recorded)"
    assert second.text.splitlines()[-1] == "Last shutdown was clean"
    assert going.kind == "shutdown"
    assert going.text.startswith("⏹️ Going down (SIGTERM) · 🟢 ACTIVE · 1 position · ")
    assert audited == []  # reports read without an audit row: no trader asked


def test_boot_message_when_last_shutdown_unclean_then_warning() -> None:
    message = reports.boot_message(status(clean_last_shutdown=False))

    assert message.severity is Severity.WARNING
    assert "NOT clean" in message.text
