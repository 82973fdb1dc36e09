"""VWAP mean reversion on bars whose VWAP and RSI are worked out by hand (RSI2, every bar's
high = low = close, so the typical price is the close)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from engine.domain import Bar, Side
from engine.strategy import Signal, VWAPReversion, VWAPReversionParams

D = Decimal
OPEN = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)  # 09:30 New York
# close, volume -> running VWAP; RSI2 (Wilder)
SESSION = [
    (100, 100),  # VWAP 100
    (102, 100),  # VWAP 101; change +2
    (99, 100),  # VWAP 100.33; +2, -3: gain 1, loss 1.5 -> RSI 40 (not oversold)
    (96, 200),  # VWAP 49300/500 = 98.6; -3: gain 0.5, loss 2.25 -> RSI 18.18: BUY
    (104, 100),  # VWAP 59700/600 = 99.5; +8: gain 4.25, loss 1.125 -> RSI 79.07: SELL
]


def _bar(minute: int, close: int, volume: int, start: datetime = OPEN) -> Bar:
    price = D(close)
    return Bar("SPY", start + timedelta(minutes=minute), price, price, price, price, D(volume))


def _run(bars: list[Bar], **params: object) -> list[Signal | None]:
    strategy = VWAPReversion(VWAPReversionParams.model_validate({"rsi_period": 2, **params}), "SPY")
    return [strategy.on_bar(b, D(0)) for b in bars]


def test_on_bar_when_below_vwap_and_oversold_then_buy_and_above_and_overbought_then_sell() -> None:
    signals = _run([_bar(i, c, v) for i, (c, v) in enumerate(SESSION)])

    assert signals == [
        None,
        None,
        None,  # below VWAP, but RSI 40 is not oversold
        Signal(Side.BUY, "close 96 below VWAP 98.60, RSI2 18.2 <= 30"),
        Signal(Side.SELL, "close 104 above VWAP 99.50, RSI2 79.1 >= 70"),
    ]


def test_on_bar_when_band_wider_than_the_distance_then_no_signal() -> None:
    # 96 is 2.6 % below 98.6 and 104 is 4.5 % above 99.5: a 5 % band rules both out.
    signals = _run([_bar(i, c, v) for i, (c, v) in enumerate(SESSION)], band_pct="5")

    assert signals == [None] * 5


def test_on_bar_when_thresholds_configured_then_they_decide() -> None:
    signals = _run([_bar(i, c, v) for i, (c, v) in enumerate(SESSION)], oversold="15")

    assert signals[3] is None  # RSI 18.2 is not <= 15
    assert signals[4] is not None
    assert signals[4].side is Side.SELL


def test_on_bar_when_new_session_opens_then_vwap_starts_from_its_first_bar() -> None:
    day1 = [_bar(i, c, v) for i, (c, v) in enumerate(SESSION[:4])]
    next_open = OPEN + timedelta(days=1)
    premarket = _bar(-10, 80, 10_000, start=next_open)
    opening = _bar(0, 90, 100, start=next_open)

    signals = _run([*day1, premarket, opening])

    # RSI is deeply oversold at the open, 90 is far below yesterday's VWAP (98.6), but the
    # new session's VWAP is the opening bar itself (the pre-market bar is not part of it).
    assert signals[-2:] == [None, None]


def test_warmup_bars_then_rsi_period_plus_one() -> None:
    assert VWAPReversion(VWAPReversionParams(rsi_period=14), "SPY").warmup_bars == 15


def test_params_when_overbought_not_above_oversold_then_refused_naming_both() -> None:
    with pytest.raises(ValidationError) as caught:
        VWAPReversionParams(oversold=D(60), overbought=D(40))

    assert caught.value.errors()[0]["ctx"]["error"].fields == ("oversold", "overbought")
