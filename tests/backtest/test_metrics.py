"""Metrics against values worked out by hand on small series."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from engine.backtest.metrics import compute, max_drawdown
from engine.backtest.results import BacktestResult, DayRow, RoundTrip

T0 = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)


def _result(
    equity: list[str], pnls: tuple[str, ...] = (), minutes: tuple[int, int] = (0, 0)
) -> BacktestResult:
    result = BacktestResult(starting_cash=Decimal(100))
    result.days = [
        DayRow(date(2026, 11, 2) + timedelta(days=i), Decimal(e), Decimal(e))
        for i, e in enumerate(equity)
    ]
    result.round_trips = [RoundTrip("AAPL", "s", T0, T0, Decimal(p)) for p in pnls]
    result.minutes_in_market, result.minutes = minutes
    return result


def test_ratios_when_three_days_of_plus_minus_ten_percent_then_hand_computed_values() -> None:
    # Returns 0.10, -0.10, 0.10: mean 1/30; sample variance
    # ((1/15)^2 + (2/15)^2 + (1/15)^2) / 2 = 0.0133333, sd 0.1154701.
    metrics = compute(_result(["110", "99", "108.9"]))

    assert metrics.total_return == pytest.approx(0.089)
    # Sharpe: 0.0333333 / 0.1154701 * sqrt(252) = 0.2886751 * 15.8745079
    assert metrics.sharpe == pytest.approx(4.582576, rel=1e-6)
    # Sortino: downside deviation sqrt(0.1^2 / 3) = 0.0577350; 0.5773503 * 15.8745079
    assert metrics.sortino == pytest.approx(9.165151, rel=1e-6)
    # CAGR: 1.089 ^ (252 / 3) - 1 = exp(84 * 0.0852615) - 1
    assert metrics.cagr == pytest.approx(1288.264, rel=1e-6)
    # From the peak of 110 down to 99 is 10 %, not made good by the end (two points later).
    assert metrics.max_drawdown.depth == pytest.approx(0.1)
    assert metrics.max_drawdown.length == 2
    assert metrics.max_drawdown.recovered is False
    assert metrics.days == 3


def test_drawdown_when_it_recovers_then_deepest_with_days_until_back_at_the_peak() -> None:
    # Peak 120 on day 1, trough 90 (-25 %), back above 120 on day 4; 130 -> 117 is only 10 %.
    equity = [Decimal(e) for e in ("120", "90", "100", "130", "117")]

    drawdown = max_drawdown(Decimal(100), equity)

    assert drawdown.depth == pytest.approx(0.25)
    assert (drawdown.length, drawdown.recovered) == (3, True)


def test_drawdown_when_equity_only_rises_then_zero() -> None:
    drawdown = max_drawdown(Decimal(100), [Decimal(101), Decimal(102)])

    assert (drawdown.depth, drawdown.length, drawdown.recovered) == (0.0, 0, True)


def test_trade_stats_when_two_wins_two_losses_then_hand_computed_values() -> None:
    metrics = compute(_result(["100.35"], ("30", "-10", "20", "-5"), minutes=(30, 120)))

    assert metrics.trades == 4
    assert metrics.win_rate == 0.5
    assert metrics.profit_factor == pytest.approx(50 / 15)  # gross profit 50, gross loss 15
    assert metrics.average_trade == Decimal("8.75")  # 35 / 4
    assert metrics.exposure == 0.25  # 30 of 120 minutes with a position


def test_undefined_ratios_when_one_day_and_no_losing_trade_then_none() -> None:
    metrics = compute(_result(["100"], ("5",)))

    assert metrics.sharpe is None  # one return has no standard deviation
    assert metrics.sortino is None  # no day lost
    assert metrics.profit_factor is None  # nothing lost
    assert metrics.exposure is None  # no traded minute
    assert metrics.cagr == 0.0


def test_nothing_when_no_trading_day_then_zero_return_and_no_ratios() -> None:
    metrics = compute(_result([]))

    assert (metrics.total_return, metrics.cagr, metrics.trades, metrics.win_rate) == (
        0.0,
        None,
        0,
        None,
    )
