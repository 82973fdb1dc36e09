"""The strategy contract: a pure function of a symbol's bar history and its position."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pandas as pd

from config.settings import StrategySettings
from engine.domain import Bar, Side

FRAME_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Signal:
    """An order the strategy wants; ``qty`` is positive, ``side`` gives the direction."""

    strategy: str
    symbol: str
    side: Side
    qty: Decimal
    ts: datetime
    """Start time of the bar that triggered the signal."""
    reason: str


class Strategy(ABC):
    """Decides from bar history alone. Implementations keep no state between calls, so the
    same code runs on live data, replays and backtests."""

    name: str

    @property
    @abstractmethod
    def warmup_bars(self) -> int:
        """Bars needed before ``on_bar`` can return a signal."""

    @abstractmethod
    def on_bar(self, symbol: str, bars: pd.DataFrame, position_qty: Decimal) -> Signal | None:
        """``bars``: the frame ``bars_to_frame`` builds, newest last. ``position_qty`` is
        signed (negative = short)."""


def bars_to_frame(bars: Sequence[Bar]) -> pd.DataFrame:
    """One symbol's bars as a frame indexed by ``ts`` (UTC) with float OHLCV columns.

    Floats are fine here: indicators compare prices, they do not account for money.
    """
    index = pd.DatetimeIndex(pd.to_datetime([b.ts for b in bars], utc=True), name="ts")
    data = {
        "open": [float(b.open) for b in bars],
        "high": [float(b.high) for b in bars],
        "low": [float(b.low) for b in bars],
        "close": [float(b.close) for b in bars],
        "volume": [float(b.volume) for b in bars],
    }
    return pd.DataFrame(data, index=index, columns=list(FRAME_COLUMNS), dtype="float64")


def build_strategy(settings: StrategySettings) -> Strategy:
    """The strategy named by ``settings.name``."""
    # Imported here: the concrete strategies import this module.
    from engine.strategy.golden_cross import GoldenCross

    if settings.name == "golden_cross":
        return GoldenCross(settings)
    raise ValueError(f"unknown strategy {settings.name!r}")
