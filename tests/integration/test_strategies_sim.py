"""Several strategies at once on the simulator: each trades its own symbols, the views group
the book by strategy, and a strategy that raises is paused alone until !resume."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.app import EngineApp, build_app
from engine.domain import Bar, TradingState
from engine.events import EngineError, Severity
from tests.support.app import sim_settings, wait_for
from tests.support.exploding import Exploding

TWO = {
    "enabled": ["trend", "revert"],
    "named": {
        "trend": {"class": "golden_cross", "symbols": "AAPL,MSFT", "fast": "5", "slow": "20"},
        "revert": {
            "class": "vwap_reversion",
            "symbols": "SPY",
            "order_qty": "3",
            "rsi_period": "5",
            "oversold": "40",
            "overbought": "60",
        },
    },
}


async def _started(tmp_path: Path, strategy: dict[str, Any]) -> tuple[EngineApp, list[EngineError]]:
    app = await build_app(sim_settings(tmp_path, strategy=strategy))
    errors: list[EngineError] = []
    app.bus.subscribe(EngineError, errors.append)
    await app.start()
    await wait_for(lambda: app.feed.health.finished, within=60)
    await app.engine.settle()
    return app, errors


async def test_two_strategies_when_replayed_then_each_trades_its_own_symbols_by_name(
    tmp_path: Path,
) -> None:
    app, _ = await _started(tmp_path, TWO)
    try:
        orders = await app.journal.load_orders()
        by_strategy = {(o.strategy, o.symbol) for o in orders}
        positions = await app.commands.positions("test")
        pnl = await app.commands.pnl("test")
    finally:
        await app.stop()

    assert {s for s, _ in by_strategy} == {"trend", "revert"}
    assert {sym for s, sym in by_strategy if s == "trend"} <= {"AAPL", "MSFT"}
    assert {sym for s, sym in by_strategy if s == "revert"} == {"SPY"}
    assert all(o.client_order_id.startswith(("trend-", "revert-")) for o in orders)
    assert all(o.qty == Decimal(3) for o in orders if o.strategy == "revert")
    assert {p.symbol: p.strategy for p in positions} == {
        p.symbol: "revert" if p.symbol == "SPY" else "trend" for p in positions
    }
    rows = {row.strategy: row for row in pnl.by_strategy}
    assert list(rows) == ["trend", "revert"]
    summary = pnl.summary
    assert sum(r.unrealized for r in rows.values()) == summary.unrealized
    assert sum(r.day_realized for r in rows.values()) == summary.day_realized
    assert rows["revert"].positions == sum(1 for p in positions if p.symbol == "SPY")


async def test_strategy_when_it_raises_then_paused_alone_alerted_and_resume_restarts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Exploding, "armed", True)  # raises on its very first bar: warm-up
    monkeypatch.setattr(Exploding, "seen", [])
    strategies = {
        "enabled": ["trend", "boom"],
        "named": {
            "trend": {"class": "golden_cross", "symbols": "AAPL,MSFT"},
            "boom": {"class": "tests.support.exploding:Exploding", "symbols": "SPY"},
        },
    }
    app, errors = await _started(tmp_path, strategies)
    try:
        critical = [e for e in errors if e.severity is Severity.CRITICAL]
        assert len(critical) == 1
        assert critical[0].component == "strategy"
        assert critical[0].message.startswith(
            "strategy boom paused after an error (RuntimeError in on_start for SPY: "
            "division by zero in my indicator)"
        )
        assert app.engine.strategies.paused.keys() == {"boom"}
        assert Exploding.seen == [], "a paused strategy is shown no bars"
        assert app.engine.signals >= 1, "the other strategy kept trading"
        assert app.engine.state.state is TradingState.ACTIVE

        report = await app.commands.resume("trader")

        assert report.strategies == ("boom",)
        assert (report.previous, report.record.state) == (TradingState.ACTIVE, TradingState.ACTIVE)
        assert app.engine.strategies.paused == {}
        assert len(Exploding.seen) == 30, "warmed up on fresh history: exactly what it asked"
        last = app.engine.portfolio.last_price("SPY")
        assert last is not None
        ts = app.clock.now()
        app.engine.on_bar(Bar("SPY", ts, last, last, last, last, Decimal(100)))
        await app.engine.settle()
        assert Exploding.seen[-1] == f"SPY {ts:%H:%M}"
    finally:
        await app.stop()


async def test_resume_when_nothing_paused_and_active_then_refused_as_before(
    tmp_path: Path,
) -> None:
    app, _ = await _started(tmp_path, TWO)
    try:
        from engine.errors import CommandError

        with pytest.raises(CommandError, match="already ACTIVE"):
            await app.commands.resume("trader")
    finally:
        await app.stop()
