"""The strategy contract: a pure function of a symbol's bar history and its position."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
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


BarRow = tuple[int, float, float, float, float, float]
"""A bar as ``(ts in epoch microseconds, open, high, low, close, volume)``."""


def bar_row(bar: Bar) -> BarRow:
    """Convert once, when a bar arrives, so building frames later is cheap."""
    micros = round(bar.ts.timestamp() * 1_000_000)
    return (
        micros,
        float(bar.open),
        float(bar.high),
        float(bar.low),
        float(bar.close),
        float(bar.volume),
    )


def rows_to_frame(rows: Sequence[BarRow]) -> pd.DataFrame:
    """Rows from ``bar_row`` as a frame indexed by ``ts`` (UTC) with float OHLCV columns.

    Floats are fine here: indicators compare prices, they do not account for money.
    """
    stamps = np.fromiter((r[0] for r in rows), dtype="int64", count=len(rows))
    # Straight from the int64 microseconds: ~5x cheaper than pd.to_datetime on this path.
    index = pd.DatetimeIndex(stamps.view("datetime64[us]"), name="ts").tz_localize("UTC")
    values = np.array([r[1:] for r in rows], dtype="float64").reshape(len(rows), 5)
    return pd.DataFrame(values, index=index, columns=list(FRAME_COLUMNS), copy=False)


def bars_to_frame(bars: Sequence[Bar]) -> pd.DataFrame:
    """One symbol's bars as a frame indexed by ``ts`` (UTC) with float OHLCV columns."""
    return rows_to_frame([bar_row(b) for b in bars])


def build_strategy(settings: StrategySettings) -> Strategy:
    """The strategy named by ``settings.name``."""
    # Imported here: the concrete strategies import this module.
    from engine.strategy.golden_cross import GoldenCross

    if settings.name == "golden_cross":
        return GoldenCross(settings)
    raise ValueError(f"unknown strategy {settings.name!r}")
