from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from config.strategies import StrategySlot
from engine.domain import Bar, Side
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH
from engine.strategy import (
    GoldenCross,
    GoldenCrossParams,
    OrderIntent,
    Signal,
    StrategyHost,
    load_strategies,
)

START = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
CROSS_UP = ["10", "10", "10", "10", "14"]  # SMA2/SMA4: 10/10 -> 12/11
CROSS_DOWN = ["10", "10", "10", "10", "6"]  # SMA2/SMA4: 10/10 -> 8/9
D = Decimal


def _bars(closes: Sequence[str], symbol: str = "AAPL") -> list[Bar]:
    return [
        Bar(symbol, START + timedelta(minutes=i), *(D(c),) * 4, D(100))
        for i, c in enumerate(closes)
    ]


def _signals(closes: Sequence[str], fast: int = 2, slow: int = 4) -> list[Signal | None]:
    strategy = GoldenCross(GoldenCrossParams(fast=fast, slow=slow), "AAPL")
    return [strategy.on_bar(b, D(0)) for b in _bars(closes)]


def test_on_bar_when_fast_crosses_above_slow_then_buy_signal_on_that_bar() -> None:
    signals = _signals(CROSS_UP)

    assert signals == [None] * 4 + [Signal(Side.BUY, "SMA2 12.00 crossed above SMA4 11.00")]


def test_on_bar_when_fast_crosses_below_slow_then_sell_signal() -> None:
    signals = _signals(CROSS_DOWN)

    assert signals[-1] == Signal(Side.SELL, "SMA2 8.00 crossed below SMA4 9.00")


@pytest.mark.parametrize(
    "closes",
    [
        ["10", "11", "12", "13", "14"],  # fast already above slow on the previous bar
        ["14", "13", "12", "11", "10"],  # already below
        ["10", "10", "10", "10", "10"],  # flat
        ["12", "12", "12", "10", "14"],  # rises to touch: 11/11.5 -> 12/12
        ["230.41", "230.95", "230.12", "230.26", "230.81"],  # touch (float sums differ by 3e-14)
    ],
)
def test_on_bar_when_no_cross_then_none(closes: list[str]) -> None:
    assert _signals(closes) == [None] * 5


def test_on_bar_when_long_history_then_only_the_last_slow_plus_one_bars_matter() -> None:
    signals = _signals(["50"] * 200 + CROSS_UP)

    assert signals[-1] == _signals(CROSS_UP)[-1]
    assert [s.side for s in signals if s is not None] == [Side.SELL, Side.BUY]  # 50 -> 10 -> 14


def test_warmup_bars_then_slow_plus_one() -> None:
    assert GoldenCross(GoldenCrossParams(fast=10, slow=30), "AAPL").warmup_bars == 31


def test_params_when_fast_not_below_slow_then_refused_naming_both() -> None:
    with pytest.raises(ValidationError) as caught:
        GoldenCrossParams(fast=30, slow=30)

    error = caught.value.errors()[0]
    assert error["ctx"]["error"].fields == ("fast", "slow")
    assert "fast length must be smaller than the slow one" in error["msg"]


def _host(use: str, fast: int, slow: int, symbols: Sequence[str]) -> StrategyHost:
    slot = StrategySlot(
        name=None,
        use=use,
        symbols=tuple(symbols),
        order_qty=D(10),
        long_only=False,
        params={"fast": fast, "slow": slow},
        prefix="STRATEGY_",
    )
    return StrategyHost(load_strategies([slot]))


def _decisions(intents: list[OrderIntent]) -> list[tuple[str, Side, Decimal, datetime]]:
    return [(i.symbol, i.side, i.qty, i.ts) for i in intents]


def _figures(intent: OrderIntent) -> list[Decimal]:
    """The two averages a reason quotes ("SMA10 231.94 crossed below SMA30 231.96")."""
    words = intent.reason.split()
    return [D(words[1]), D(words[-1])]


def _assert_same_signals(incremental: list[OrderIntent], frame: list[OrderIntent]) -> None:
    assert _decisions(incremental) == _decisions(frame)
    for mine, theirs in zip(incremental, frame, strict=True):
        # Exact decimal averages vs float ones: equal but at a half cent, where the float
        # one may sit a hair below or above and round the other way.
        for a, b in zip(_figures(mine), _figures(theirs), strict=True):
            assert abs(a - b) <= D("0.01"), (mine, theirs)


def _run(host: StrategyHost, bars: Sequence[Bar], replay_from: datetime) -> list[OrderIntent]:
    """Warm up on the bars before ``replay_from``, then trade the rest, always from flat."""
    for symbol in host.symbols:
        history = [b for b in bars if b.symbol == symbol and b.ts < replay_from]
        host.warm_up(symbol, history[-host.warmup_bars(symbol) :])
    intents = [host.on_bar(b, D(0)) for b in bars if b.ts >= replay_from]
    return [i for i in intents if i is not None]


def test_sample_day_when_incremental_and_frame_versions_run_then_identical_signals() -> None:
    bars = load_bars_csv(SAMPLE_BARS_PATH)
    second_day = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    symbols = ("AAPL", "MSFT", "SPY")
    reference = "tests.support.frame_golden_cross:FrameGoldenCross"

    incremental = _run(_host("golden_cross", 10, 30, symbols), bars, second_day)
    frame = _run(_host(reference, 10, 30, symbols), bars, second_day)

    _assert_same_signals(incremental, frame)
    for symbol in symbols:
        sides = [i.side for i in incremental if i.symbol == symbol]
        assert 2 <= sides.count(Side.BUY) <= 8, (symbol, sides)
        assert 2 <= sides.count(Side.SELL) <= 8, (symbol, sides)


def test_sample_when_fast_and_slow_are_short_then_still_identical_to_the_frame_version() -> None:
    # Short averages cross far more often: many more chances to disagree.
    bars = load_bars_csv(SAMPLE_BARS_PATH)
    first_bar = bars[0].ts
    reference = "tests.support.frame_golden_cross:FrameGoldenCross"

    incremental = _run(_host("golden_cross", 2, 5, ("AAPL", "MSFT", "SPY")), bars, first_bar)
    frame = _run(_host(reference, 2, 5, ("AAPL", "MSFT", "SPY")), bars, first_bar)

    assert len(incremental) > 300
    _assert_same_signals(incremental, frame)
