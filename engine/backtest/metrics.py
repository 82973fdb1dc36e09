"""A backtest's metrics, from its daily equity and its round trips.

Conventions (docs/backtest.md says the same):
- returns are daily: equity at each trading day's last bar against the day before (the first
  day against the starting cash); a year is 252 trading days; the risk-free rate is 0;
- Sharpe: mean daily return / its sample standard deviation (n - 1) * sqrt(252);
- Sortino: mean daily return / downside deviation * sqrt(252), where the downside deviation
  is sqrt(mean(min(r, 0)^2)) over all days (target 0);
- CAGR: (final / start) ^ (252 / trading days) - 1;
- max drawdown: the deepest fall of equity from its running peak (the starting cash counts
  as the first peak), as a fraction of that peak, on the equity after every traded minute;
  its duration: traded minutes from that peak until equity is back at it (or the end);
- a trade is a round trip (flat -> position -> flat or a flip, ``results.RoundTrips``):
  win rate = trades with P&L > 0 / trades; profit factor = gross profit / gross loss (None
  when no trade lost); average trade = mean P&L; P&L is net of every fee of the trip;
- exposure: the share of traded minutes that ended with a position open.

Ratios are floats (None when undefined: too few days, no variation); money stays Decimal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from engine.backtest.results import BacktestResult
from engine.domain import ZERO

TRADING_DAYS_PER_YEAR = 252
CONVENTIONS = {
    "returns": "daily: equity at each trading day's last bar against the day before",
    "trading_days_per_year": TRADING_DAYS_PER_YEAR,
    "risk_free_rate": 0,
    "sharpe": "mean daily return / sample standard deviation * sqrt(252)",
    "sortino": "mean daily return / sqrt(mean(min(r, 0)^2)) * sqrt(252)",
    "cagr": "(final / start) ^ (252 / trading days) - 1",
    "max_drawdown": "deepest fall of per-minute equity from its running peak, as a fraction",
    "max_drawdown_length": "traded minutes from that peak until equity is back at it",
    "trade": "a round trip: flat to flat (or a flip), P&L net of its fees",
    "exposure": "share of traded minutes that ended with a position open",
}


@dataclass(frozen=True, slots=True)
class Drawdown:
    depth: float
    """Fraction of the peak lost at the trough (0.25 = 25 %); 0 when equity never fell."""
    length: int
    """Points of the series (traded minutes) from the peak until equity was back at it, or
    until the series ended."""
    recovered: bool


@dataclass(frozen=True, slots=True)
class Metrics:
    starting_cash: Decimal
    final_equity: Decimal
    total_return: float
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: Drawdown
    trades: int
    win_rate: float | None
    profit_factor: float | None
    average_trade: Decimal | None
    exposure: float | None
    fees: Decimal
    fills: int
    days: int


def daily_returns(start: Decimal, equity: Sequence[Decimal]) -> list[float]:
    """Each day's equity against the previous day's (the first against ``start``)."""
    returns = []
    previous = start
    for value in equity:
        returns.append(float(value / previous) - 1.0 if previous else 0.0)
        previous = value
    return returns


def sharpe(returns: Sequence[float]) -> float | None:
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if variance <= 0:
        return None
    return mean / math.sqrt(variance) * math.sqrt(TRADING_DAYS_PER_YEAR)


def sortino(returns: Sequence[float]) -> float | None:
    if not returns:
        return None
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside == 0:
        return None
    mean = sum(returns) / len(returns)
    return mean / downside * math.sqrt(TRADING_DAYS_PER_YEAR)


def cagr(start: Decimal, final: Decimal, days: int) -> float | None:
    if days <= 0 or start <= ZERO or final <= ZERO:
        return None
    try:
        growth: float = float(final / start) ** (TRADING_DAYS_PER_YEAR / days)
    except OverflowError:
        return math.inf
    return growth - 1.0


def max_drawdown(start: Decimal, equity: Sequence[Decimal]) -> Drawdown:
    """The deepest drawdown of ``start`` followed by ``equity``."""
    series = [start, *equity]
    peak, peak_at = series[0], 0
    worst = Drawdown(0.0, 0, True)
    worst_peak, worst_peak_at = peak, 0
    for i, value in enumerate(series):
        if value >= peak:
            peak, peak_at = value, i
            continue
        depth = float(1 - value / peak)
        if depth > worst.depth:
            worst = Drawdown(depth, 0, False)
            worst_peak, worst_peak_at = peak, peak_at
    if worst.depth == 0:
        return worst
    back = next((i for i in range(worst_peak_at + 1, len(series)) if series[i] >= worst_peak), None)
    end = len(series) - 1 if back is None else back
    return Drawdown(worst.depth, end - worst_peak_at, back is not None)


def compute(result: BacktestResult) -> Metrics:
    start = result.starting_cash
    equity = [day.equity for day in result.days]
    final = result.final_equity
    returns = daily_returns(start, equity)
    pnls = [trip.pnl for trip in result.round_trips]
    gains = sum((p for p in pnls if p > ZERO), ZERO)
    losses = -sum((p for p in pnls if p < ZERO), ZERO)
    return Metrics(
        starting_cash=start,
        final_equity=final,
        total_return=float(final / start) - 1.0,
        cagr=cagr(start, final, len(equity)),
        sharpe=sharpe(returns),
        sortino=sortino(returns),
        max_drawdown=max_drawdown(start, [v for _, v in result.curve] or equity),
        trades=len(pnls),
        win_rate=sum(1 for p in pnls if p > ZERO) / len(pnls) if pnls else None,
        profit_factor=float(gains / losses) if losses > ZERO else None,
        average_trade=sum(pnls, ZERO) / len(pnls) if pnls else None,
        exposure=result.minutes_in_market / result.minutes if result.minutes else None,
        fees=result.fees,
        fills=len(result.trades),
        days=len(equity),
    )
