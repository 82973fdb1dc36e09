"""P&L per strategy: the portfolio grouped by the owner of each symbol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain import Fill, Side
from engine.portfolio import Portfolio
from engine.strategy.pnl import UNASSIGNED, StrategyPnL, pnl_by_strategy

D = Decimal
YESTERDAY = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)
TODAY = YESTERDAY + timedelta(days=1)


def _fill(n: int, symbol: str, side: Side, qty: int, price: str, ts: datetime) -> Fill:
    return Fill(f"x{n}", f"c{n}", f"b{n}", symbol, side, D(qty), D(price), ts, D(1))


def test_pnl_by_strategy_when_symbols_of_two_strategies_and_a_stray_then_grouped_by_owner() -> None:
    book = Portfolio(cash=D(100_000))
    book.start_day(YESTERDAY.date(), D(100_000))
    book.apply_fill(_fill(1, "MSFT", Side.BUY, 10, "400", YESTERDAY))
    book.apply_fill(_fill(2, "MSFT", Side.SELL, 10, "410", YESTERDAY))  # +100, flat
    book.start_day(TODAY.date(), book.equity)
    book.apply_fill(_fill(3, "AAPL", Side.BUY, 10, "200", TODAY))
    book.apply_fill(_fill(4, "AAPL", Side.SELL, 4, "205", TODAY))  # +20 today, 6 left
    book.apply_fill(_fill(5, "SPY", Side.BUY, 2, "500", TODAY))
    book.apply_fill(_fill(6, "TSLA", Side.BUY, 1, "300", TODAY))  # nobody's symbol
    book.mark("AAPL", D(210))  # 6 x +10
    book.mark("SPY", D(490))  # 2 x -10
    owners = {"AAPL": "trend", "MSFT": "trend", "SPY": "revert", "QQQ": "idle"}

    rows = pnl_by_strategy(book.summary(), book, owners, order=["trend", "revert", "idle"])

    assert rows == [
        StrategyPnL("trend", 1, D(1260), D(60), D(20), D(120), D(4)),
        StrategyPnL("revert", 1, D(980), D(-20), D(0), D(0), D(1)),
        StrategyPnL("idle", 0, D(0), D(0), D(0), D(0), D(0)),
        StrategyPnL(UNASSIGNED, 1, D(300), D(0), D(0), D(0), D(1)),
    ]
    summary = book.summary()
    assert sum(r.unrealized for r in rows) == summary.unrealized
    assert sum(r.realized for r in rows) == summary.realized
    assert sum(r.commissions for r in rows) == summary.commissions
