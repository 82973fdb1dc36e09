"""Tests for MeanRevert: hand-made bars in, signals out. Run: pytest test_mean_revert.py"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain import Bar, Fill, Side
from mystrategies.mean_revert import MeanRevert, MeanRevertParams

START = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def bars(*closes: str) -> list[Bar]:
    return [
        Bar("AAPL", START + timedelta(minutes=i), *(Decimal(c),) * 4, Decimal(100))
        for i, c in enumerate(closes)
    ]


def test_buys_a_dip_under_the_mean_then_sells_back_at_the_mean() -> None:
    strategy = MeanRevert(MeanRevertParams(window=3, dip_pct=Decimal(5)), "AAPL")
    first, second, dip, back = bars("100", "100", "85", "95")

    assert strategy.on_bar(first, Decimal(0)) is None  # the mean is not ready yet
    assert strategy.on_bar(second, Decimal(0)) is None
    buy = strategy.on_bar(dip, Decimal(0))  # mean 95: 85 is more than 5 % under it
    sell = strategy.on_bar(back, Decimal(10))  # mean (100 + 85 + 95) / 3 = 93.33

    assert buy is not None
    assert buy.side is Side.BUY
    assert sell is not None
    assert sell.side is Side.SELL


def test_sells_at_the_stop_below_the_price_it_bought_at() -> None:
    strategy = MeanRevert(MeanRevertParams(window=2, stop_pct=Decimal(2)), "AAPL")
    for bar in bars("100", "100"):
        strategy.on_bar(bar, Decimal(0))
    strategy.on_fill(Fill("x1", "c1", "b1", "AAPL", Side.BUY, Decimal(10), Decimal(100), START))

    (drop,) = bars("97")
    signal = strategy.on_bar(drop, Decimal(10))  # mean 98.5, stop 98

    assert signal is not None
    assert signal.reason == "97 hit the stop 98.00"
