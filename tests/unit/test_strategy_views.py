"""The per-strategy breakdown as the trader reads it (console and Discord share bot.text)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot import text
from engine.commands import PnLReport, PositionView, ResumeReport
from engine.domain import TradingState
from engine.portfolio import PnLSummary
from engine.risk import Cause, StateRecord
from engine.strategy.pnl import UNASSIGNED, StrategyPnL

D = Decimal
NOW = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)


def test_position_line_when_owned_or_not_then_names_the_strategy() -> None:
    owned = PositionView("AAPL", D(10), D(200), D(210), D(2100), D(100), D(5), "trend")
    stray = PositionView("TSLA", D(1), D(300), D(300), D(300), D(0), D(0))

    assert text.position_line(owned).endswith(" · trend")
    assert text.position_line(stray).endswith(" · no strategy")


def test_render_pnl_when_two_strategies_then_one_line_each_after_the_symbols() -> None:
    summary = PnLSummary(
        realized=D(0),
        day_realized=D(20),
        unrealized=D(40),
        commissions=D(2),
        day_commissions=D(2),
        equity=D(100_058),
        day_start_equity=D(100_000),
        day_pnl=D(58),
        gross_exposure=D(3240),
        net_exposure=D(3240),
        by_symbol=[],
    )
    rows = [
        StrategyPnL("trend", 1, D(2260), D(60), D(20), D(20), D(1)),
        StrategyPnL("revert", 1, D(980), D(-20), D(0), D(0), D(1)),
        StrategyPnL(UNASSIGNED, 0, D(0), D(0), D(0), D(0), D(0)),
    ]

    lines = text.render_pnl(PnLReport(summary, [], rows)).splitlines()

    assert lines[-3].startswith("trend: 1 position · unreal +$60.00 · real today +$20.00")
    assert lines[-2].startswith("revert: 1 position · unreal -$20.00")
    assert lines[-1].startswith("no strategy: 0 positions")


def test_render_resume_when_strategies_restarted_then_named() -> None:
    record = StateRecord(TradingState.ACTIVE, "trader", "resumed", Cause.MANUAL, NOW)

    shown = text.render_resume(ResumeReport(TradingState.ACTIVE, record, ("boom",)))

    assert shown.endswith("Strategies running again: boom.")
