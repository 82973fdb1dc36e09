"""Golden cross: buy when the fast simple moving average of closes crosses above the slow
one, sell when it crosses below. Two running sums over one window of closes per symbol,
O(1) per bar."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.domain import ZERO, Bar, Side
from engine.strategy.base import ParamsError, Signal, Strategy


class GoldenCrossParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fast: int = Field(default=10, gt=0)
    """Length of the fast average, in bars."""
    slow: int = Field(default=30, gt=1)
    """Length of the slow average, in bars; larger than ``fast``."""

    @model_validator(mode="after")
    def _fast_below_slow(self) -> GoldenCrossParams:
        if self.fast >= self.slow:
            raise ParamsError("the fast length must be smaller than the slow one", "fast", "slow")
        return self


class GoldenCross(Strategy[GoldenCrossParams]):
    name = "golden_cross"
    Params = GoldenCrossParams

    def __init__(self, params: GoldenCrossParams, symbol: str) -> None:
        super().__init__(params, symbol)
        self._n_fast, self._n_slow = params.fast, params.slow
        self._closes: deque[Decimal] = deque(maxlen=params.slow)
        """The last ``slow`` closes: the slow average's window, the fast one's is its tail."""
        self._fast_sum = ZERO
        self._slow_sum = ZERO
        self._side_before: int | None = None
        """Sign of fast - slow on the previous bar; None until both averages are full."""

    @property
    def warmup_bars(self) -> int:
        # One bar more than the slow average: a cross compares with the previous bar.
        return self.params.slow + 1

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        close = bar.close
        closes = self._closes
        fast = self._n_fast
        slow = self._n_slow
        seen = len(closes)
        # Each sum gains the close and loses the one that leaves its window (append drops
        # closes[0] once the window is full: every bar after the first ``slow``).
        if seen == slow:
            slow_sum = self._slow_sum = self._slow_sum + (close - closes[0])
            fast_sum = self._fast_sum = self._fast_sum + (close - closes[-fast])
            closes.append(close)
        else:
            slow_sum = self._slow_sum = self._slow_sum + close
            fast_sum = self._fast_sum = self._fast_sum + (
                close - closes[-fast] if seen >= fast else close
            )
            closes.append(close)
            if seen + 1 < slow:
                return None
        # fast/n_fast vs slow/n_slow, compared exactly: equal averages are "touching", and
        # touching is not a cross.
        fast_scaled = fast_sum * slow
        slow_scaled = slow_sum * fast
        side_now = 1 if fast_scaled > slow_scaled else (0 if fast_scaled == slow_scaled else -1)
        side_before, self._side_before = self._side_before, side_now
        if side_before is None or side_now == side_before:
            return None
        if side_now > 0 >= side_before:
            side, verb = Side.BUY, "above"
        elif side_now < 0 <= side_before:
            side, verb = Side.SELL, "below"
        else:
            return None
        fast_mean, slow_mean = fast_sum / fast, slow_sum / slow
        reason = f"SMA{fast} {fast_mean:.2f} crossed {verb} SMA{slow} {slow_mean:.2f}"
        return Signal(side, reason)
