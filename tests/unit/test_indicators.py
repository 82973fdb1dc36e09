"""Running indicators against values worked out by hand."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from engine.domain import Bar
from engine.strategy.indicators import RSI, RollingMean, SessionVWAP
from tests.unit.engine_stubs import ny

D = Decimal


def test_rolling_mean_when_window_fills_then_mean_of_last_values_only() -> None:
    mean = RollingMean(3)

    for value in ("1", "2"):
        mean.add(D(value))
    assert not mean.ready
    mean.add(D(3))
    assert (mean.ready, mean.value, mean.sum) == (True, D(2), D(6))
    mean.add(D(10))  # 2 + 3 + 10

    assert (mean.value, mean.sum) == (D(5), D(15))


def test_rolling_mean_when_a_million_updates_then_sum_is_exact() -> None:
    mean = RollingMean(2)

    for i in range(100_000):
        mean.add(D("0.1") * (i % 7))

    # Exact decimal: no drift however long it runs (floats would be off by now).
    assert mean.sum == D("0.1") * (99_998 % 7) + D("0.1") * (99_999 % 7)


def test_rolling_mean_when_length_zero_then_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RollingMean(0)


def test_rsi_when_fed_hand_computed_closes_then_wilder_values() -> None:
    rsi = RSI(3)
    # changes: +2, -1, +2 -> seed averages gain 4/3, loss 1/3: RS 4, RSI 80
    for close in ("10", "12", "11", "13"):
        rsi.add(D(close))

    assert rsi.ready
    assert rsi.value == D(80)

    # change -3: gain (4/3*2 + 0)/3 = 8/9, loss (1/3*2 + 3)/3 = 11/9 -> RS 8/11
    rsi.add(D(10))
    assert rsi.value.quantize(D("0.000001")) == (D(100) - D(100) / (1 + D(8) / D(11))).quantize(
        D("0.000001")
    )
    assert round(float(rsi.value), 4) == 42.1053


@pytest.mark.parametrize(
    ("closes", "expected"),
    [(["5", "5", "5", "5"], D(50)), (["5", "6", "7", "8"], D(100)), (["8", "7", "6", "5"], D(0))],
)
def test_rsi_when_prices_flat_or_one_way_then_edges(closes: list[str], expected: Decimal) -> None:
    rsi = RSI(3)

    for close in closes:
        rsi.add(D(close))

    assert rsi.value == expected


def test_rsi_when_fewer_than_period_plus_one_closes_then_not_ready() -> None:
    rsi = RSI(3)

    for close in ("10", "11", "12"):
        rsi.add(D(close))

    assert not rsi.ready


def _bar(ts_minutes: int, high: str, low: str, close: str, volume: int, hour: int = 9) -> Bar:
    ts = ny(hour, 30) + timedelta(minutes=ts_minutes)
    return Bar("AAPL", ts, D(close), D(high), D(low), D(close), D(volume))


def test_session_vwap_when_bars_of_one_session_then_volume_weighted_typical_price() -> None:
    vwap = SessionVWAP()
    vwap.add(_bar(0, "12", "9", "9", 100))  # typical 10, 100 shares
    vwap.add(_bar(1, "21", "18", "21", 300))  # typical 20, 300 shares

    # (10 * 100 + 20 * 300) / 400
    assert vwap.value == D("17.5")


def test_session_vwap_when_bar_before_the_open_then_ignored() -> None:
    vwap = SessionVWAP()
    premarket = _bar(-15, "50", "50", "50", 1_000)

    vwap.add(premarket)
    assert not vwap.ready
    assert not vwap.in_session(premarket)
    opening = _bar(0, "12", "9", "9", 100)
    vwap.add(opening)

    assert vwap.value == D(10)
    assert vwap.in_session(opening)


def test_session_vwap_when_next_day_opens_then_starts_again() -> None:
    vwap = SessionVWAP()
    vwap.add(_bar(0, "12", "9", "9", 100))
    next_day = ny(9, 30) + timedelta(days=1)

    vwap.add(Bar("AAPL", next_day - timedelta(minutes=5), *(D(99),) * 4, D(50)))  # pre-open
    assert not vwap.ready
    vwap.add(Bar("AAPL", next_day, D(30), D(33), D(30), D(30), D(10)))

    assert vwap.value == D(31)
