"""The golden cross as it was before strategies became incremental: float averages over a
pandas frame rebuilt on every bar. Kept as the reference the incremental one must match
signal for signal, and as the frame-per-evaluation path the hot-path benchmark measures
side by side (it loads through the settings like any user strategy:
``STRATEGY_NAME=tests.support.frame_golden_cross:FrameGoldenCross``)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd

from engine.domain import Side
from engine.strategy.base import Signal
from engine.strategy.frame import FrameStrategy
from engine.strategy.golden_cross import GoldenCrossParams

# Averages that are equal in decimal can differ in the last float bit; treat differences
# this small (relative to price) as "touching", which is not a cross.
_REL_TOLERANCE = 1e-9


class FrameGoldenCross(FrameStrategy[GoldenCrossParams]):
    name = "golden_cross"
    Params = GoldenCrossParams

    @property
    def window_bars(self) -> int:
        return self.params.slow + 1

    def on_frame(self, bars: pd.DataFrame, position: Decimal) -> Signal | None:
        fast, slow = self.params.fast, self.params.slow
        closes = bars["close"].to_numpy(dtype="float64")[-self.window_bars :]
        fast_now = float(closes[-fast:].mean())
        slow_now = float(closes[-slow:].mean())
        fast_prev = float(closes[-fast - 1 : -1].mean())
        slow_prev = float(closes[:slow].mean())
        tolerance = _REL_TOLERANCE * max(abs(slow_now), 1.0)
        diff_now = fast_now - slow_now
        diff_prev = fast_prev - slow_prev
        if diff_now > tolerance and diff_prev <= tolerance:
            side, verb = Side.BUY, "above"
        elif diff_now < -tolerance and diff_prev >= -tolerance:
            side, verb = Side.SELL, "below"
        else:
            return None
        return Signal(side, f"SMA{fast} {fast_now:.2f} crossed {verb} SMA{slow} {slow_now:.2f}")
