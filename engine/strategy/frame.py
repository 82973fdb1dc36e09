"""For a strategy that really wants a pandas window: it keeps its own last ``window_bars``
bars and builds a frame on every bar. That costs ~100 µs a bar, paid by that strategy
alone; incremental strategies never build one."""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from engine.domain import Bar
from engine.strategy.base import P, Signal, Strategy

FRAME_COLUMNS = ("open", "high", "low", "close", "volume")

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


class FrameStrategy(Strategy[P]):
    """Implement ``window_bars`` and ``on_frame``; ``on_bar`` is done for you."""

    def __init__(self, params: P, symbol: str) -> None:
        super().__init__(params, symbol)
        self._rows: deque[BarRow] = deque(maxlen=self.window_bars)

    @property
    @abstractmethod
    def window_bars(self) -> int:
        """Bars in the frame ``on_frame`` gets (also the warm-up, unless overridden)."""

    @property
    def warmup_bars(self) -> int:
        return self.window_bars

    @abstractmethod
    def on_frame(self, bars: pd.DataFrame, position: Decimal) -> Signal | None:
        """``bars``: the last ``window_bars`` bars as ``bars_to_frame`` builds them, newest
        last. Only called once the window is full."""

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        self._rows.append(bar_row(bar))
        if len(self._rows) < self.window_bars:
            return None
        return self.on_frame(rows_to_frame(self._rows), position)
