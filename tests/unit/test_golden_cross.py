from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from config.settings import StrategySettings
from engine.domain import Bar, Side, Tick
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH, ReplayFeed
from engine.strategy import GoldenCross, Signal, bars_to_frame, build_strategy

START = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
CROSS_UP = ["10", "10", "10", "10", "14"]  # SMA2/SMA4: 10/10 -> 12/11
CROSS_DOWN = ["10", "10", "10", "10", "6"]  # SMA2/SMA4: 10/10 -> 8/9


def _settings(*, long_only: bool = True, fast: int = 2, slow: int = 4) -> StrategySettings:
    return StrategySettings(fast=fast, slow=slow, order_qty=Decimal(10), long_only=long_only)


def _frame(closes: list[str]) -> pd.DataFrame:
    bars = [
        Bar("AAPL", START + timedelta(minutes=i), *(Decimal(c),) * 4, Decimal(100))
        for i, c in enumerate(closes)
    ]
    return bars_to_frame(bars)


def test_on_bar_when_fast_crosses_above_slow_then_buy_signal_at_last_bar() -> None:
    strategy = GoldenCross(_settings())

    signal = strategy.on_bar("AAPL", _frame(CROSS_UP), Decimal(0))

    assert signal == Signal(
        strategy="golden_cross",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(10),
        ts=START + timedelta(minutes=4),
        reason="SMA2 12.00 crossed above SMA4 11.00",
    )
    assert signal.ts.tzinfo is UTC


def test_on_bar_when_fast_crosses_below_slow_then_sell_signal() -> None:
    strategy = GoldenCross(_settings(long_only=False))

    signal = strategy.on_bar("MSFT", _frame(CROSS_DOWN), Decimal(0))

    assert signal is not None
    assert (signal.symbol, signal.side, signal.qty) == ("MSFT", Side.SELL, Decimal(10))
    assert signal.reason == "SMA2 8.00 crossed below SMA4 9.00"
    assert signal.ts == START + timedelta(minutes=4)


@pytest.mark.parametrize(
    "closes",
    [
        ["10", "11", "12", "13", "14"],  # fast already above slow on the previous bar
        ["14", "13", "12", "11", "10"],  # already below
        ["10", "10", "10", "10", "10"],  # flat
        ["12", "12", "12", "10", "14"],  # rises to touch: 11/11.5 -> 12/12
        ["230.41", "230.95", "230.12", "230.26", "230.81"],  # touch: float sums differ by 3e-14
    ],
)
def test_on_bar_when_no_cross_then_none(closes: list[str]) -> None:
    strategy = GoldenCross(_settings(long_only=False))

    assert strategy.on_bar("AAPL", _frame(closes), Decimal(0)) is None


def test_on_bar_when_fewer_than_slow_plus_one_bars_then_none() -> None:
    strategy = GoldenCross(_settings())

    assert strategy.warmup_bars == 5
    assert strategy.on_bar("AAPL", _frame(CROSS_UP[1:]), Decimal(0)) is None
    assert strategy.on_bar("AAPL", _frame([]), Decimal(0)) is None


def test_on_bar_when_long_history_then_only_the_last_slow_plus_one_bars_matter() -> None:
    strategy = GoldenCross(_settings())

    signal = strategy.on_bar("AAPL", _frame(["50"] * 200 + CROSS_UP), Decimal(0))

    assert signal is not None
    assert signal.side is Side.BUY
    assert signal.ts == START + timedelta(minutes=204)


def test_on_bar_when_called_twice_then_same_answer_no_hidden_state() -> None:
    strategy = GoldenCross(_settings())
    frame = _frame(CROSS_UP)

    assert strategy.on_bar("AAPL", frame, Decimal(0)) == strategy.on_bar("AAPL", frame, Decimal(0))


@pytest.mark.parametrize(
    ("closes", "position", "expected"),
    [
        (CROSS_UP, "0", (Side.BUY, "10")),
        (CROSS_UP, "10", None),  # already long
        (CROSS_UP, "-5", None),  # long-only does not trade a short it did not open
        (CROSS_DOWN, "7", (Side.SELL, "7")),  # sell the whole long
        (CROSS_DOWN, "0", None),  # never opens a short
    ],
)
def test_on_bar_when_long_only_then_sizing(
    closes: list[str], position: str, expected: tuple[Side, str] | None
) -> None:
    strategy = GoldenCross(_settings(long_only=True))

    signal = strategy.on_bar("AAPL", _frame(closes), Decimal(position))

    got = None if signal is None else (signal.side, signal.qty)
    assert got == (None if expected is None else (expected[0], Decimal(expected[1])))


@pytest.mark.parametrize(
    ("closes", "position", "expected"),
    [
        (CROSS_UP, "-5", (Side.BUY, "15")),  # cover 5, then long 10
        (CROSS_UP, "0", (Side.BUY, "10")),
        (CROSS_UP, "3", None),
        (CROSS_DOWN, "7", (Side.SELL, "17")),  # sell 7, then short 10
        (CROSS_DOWN, "0", (Side.SELL, "10")),
        (CROSS_DOWN, "-10", None),
    ],
)
def test_on_bar_when_long_short_then_flip_sizing(
    closes: list[str], position: str, expected: tuple[Side, str] | None
) -> None:
    strategy = GoldenCross(_settings(long_only=False))

    signal = strategy.on_bar("AAPL", _frame(closes), Decimal(position))

    got = None if signal is None else (signal.side, signal.qty)
    assert got == (None if expected is None else (expected[0], Decimal(expected[1])))


def test_bars_to_frame_then_utc_index_and_float_columns() -> None:
    bar = Bar(
        "SPY",
        START,
        Decimal("590.10"),
        Decimal("590.50"),
        Decimal("589.90"),
        Decimal("590.25"),
        Decimal(1234),
    )

    frame = bars_to_frame([bar])

    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "ts"
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("2026-11-20T14:30:00Z")
    assert frame.iloc[0].tolist() == [590.10, 590.50, 589.90, 590.25, 1234.0]
    assert all(dtype == "float64" for dtype in frame.dtypes)


def test_build_strategy_when_golden_cross_then_configured_instance() -> None:
    strategy = build_strategy(_settings(fast=10, slow=30))

    assert isinstance(strategy, GoldenCross)
    assert strategy.name == "golden_cross"
    assert strategy.warmup_bars == 31


class _CrossCounter:
    """Feeds each replayed bar, with the history before it, to the strategy."""

    def __init__(self, strategy: GoldenCross, history: dict[str, list[Bar]]) -> None:
        self.strategy = strategy
        self.bars = history
        self.signals: Counter[tuple[str, Side]] = Counter()

    async def settle(self) -> None:
        """Nothing runs in the background here."""

    def on_bar(self, bar: Bar) -> None:
        window = self.bars[bar.symbol]
        window.append(bar)
        frame = bars_to_frame(window[-self.strategy.warmup_bars :])
        # Flat every time: the long/short strategy then signals on every cross, both ways.
        signal = self.strategy.on_bar(bar.symbol, frame, Decimal(0))
        if signal is not None:
            assert signal.ts == bar.ts
            self.signals[(bar.symbol, signal.side)] += 1

    def on_tick(self, tick: Tick) -> None:
        raise AssertionError("no ticks in a bar replay")


async def test_sample_second_day_then_each_symbol_crosses_both_ways_a_few_times() -> None:
    strategy = GoldenCross(_settings(long_only=False, fast=10, slow=30))
    feed = ReplayFeed(load_bars_csv(SAMPLE_BARS_PATH), speed=0)
    history = {s: await feed.history(s, feed.replay_from, limit=500) for s in feed.symbols}
    counter = _CrossCounter(strategy, history)

    await feed.run(counter)

    assert {len(h) for h in history.values()} == {390 + 390}  # history list grew in place
    for symbol in ("AAPL", "MSFT", "SPY"):
        for side in (Side.BUY, Side.SELL):
            assert 2 <= counter.signals[(symbol, side)] <= 8, (symbol, side, counter.signals)
