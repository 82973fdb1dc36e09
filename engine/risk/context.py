"""The one builder of the risk gate's snapshot (``RiskContext``) from the book.

The engine's order path (``ExecutionManager.risk_context``) and the backtest runner
(``engine.backtest.runner``) both call it, each with its own sources for the parts that are
not the portfolio's: the trading state, whether the market is open, the open orders, the
buying power and the day's counters.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime
from decimal import Decimal

from engine.clock import trading_day
from engine.domain import TradingState
from engine.portfolio import Portfolio
from engine.risk.gate import RiskContext


def build_risk_context(
    symbol: str,
    *,
    now: datetime,
    state: TradingState,
    market_open: bool,
    portfolio: Portfolio,
    open_order_qty: Decimal,
    buying_power: Decimal,
    orders_today: int,
    day_trades_5d: int,
    known_client_order_ids: Container[str],
) -> RiskContext:
    """The snapshot for one order in ``symbol`` at ``now``: position, exposure, equity and
    day P&L from ``portfolio``; the position counts as opened today when it was opened on
    ``now``'s New York trading date."""
    opened_at = portfolio.opened_at(symbol)
    opened_today = opened_at is not None and trading_day(opened_at) == trading_day(now)
    return RiskContext(
        state=state,
        market_open=market_open,
        position_qty=portfolio.qty(symbol),
        open_order_qty=open_order_qty,
        last_price=portfolio.last_price(symbol),
        gross_exposure=portfolio.gross_exposure,
        buying_power=buying_power,
        equity=portfolio.equity,
        day_pnl=portfolio.day_pnl,
        orders_today=orders_today,
        day_trades_5d=day_trades_5d,
        position_opened_today=opened_today,
        known_client_order_ids=known_client_order_ids,
    )
