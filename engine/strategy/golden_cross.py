"""Golden cross: buy when the fast SMA of closes crosses above the slow one, sell when it
crosses below."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd

from config.settings import StrategySettings
from engine.domain import ZERO, Side, ensure_utc
from engine.strategy.base import Signal, Strategy

# Averages that are equal in decimal can differ in the last float bit; treat differences
# this small (relative to price) as "touching", which is not a cross.
_REL_TOLERANCE = 1e-9


class GoldenCross(Strategy):
    name = "golden_cross"

    def __init__(self, settings: StrategySettings) -> None:
        self._fast = settings.fast
        self._slow = settings.slow
        self._order_qty = settings.order_qty
        self._long_only = settings.long_only

    @property
    def warmup_bars(self) -> int:
        # One bar more than the slow average: the cross compares with the previous bar.
        return self._slow + 1

    def on_bar(self, symbol: str, bars: pd.DataFrame, position_qty: Decimal) -> Signal | None:
        if len(bars) < self.warmup_bars:
            return None
        closes = bars["close"].to_numpy(dtype="float64")[-self.warmup_bars :]
        fast_now = float(closes[-self._fast :].mean())
        slow_now = float(closes[-self._slow :].mean())
        fast_prev = float(closes[-self._fast - 1 : -1].mean())
        slow_prev = float(closes[: self._slow].mean())
        tolerance = _REL_TOLERANCE * max(abs(slow_now), 1.0)
        diff_now = fast_now - slow_now
        diff_prev = fast_prev - slow_prev
        if diff_now != diff_now or diff_prev != diff_prev:  # NaN close: cannot decide
            return None

        if diff_now > tolerance and diff_prev <= tolerance:
            side, qty = Side.BUY, self._buy_qty(position_qty)
            verb = "above"
        elif diff_now < -tolerance and diff_prev >= -tolerance:
            side, qty = Side.SELL, self._sell_qty(position_qty)
            verb = "below"
        else:
            return None
        if qty <= ZERO:
            return None
        last = bars.index[-1]
        if not isinstance(last, pd.Timestamp):
            raise TypeError("bars must be indexed by timestamp (see bars_to_frame)")
        return Signal(
            strategy=self.name,
            symbol=symbol,
            side=side,
            qty=qty,
            ts=ensure_utc(last.to_pydatetime()),
            reason=(
                f"SMA{self._fast} {fast_now:.2f} crossed {verb} SMA{self._slow} {slow_now:.2f}"
            ),
        )

    def _buy_qty(self, position: Decimal) -> Decimal:
        if position > ZERO:
            return ZERO
        if position < ZERO:
            # Long-only never trades out of a short it did not open; otherwise flip to long.
            return ZERO if self._long_only else -position + self._order_qty
        return self._order_qty

    def _sell_qty(self, position: Decimal) -> Decimal:
        if position > ZERO:
            return position if self._long_only else position + self._order_qty
        if position < ZERO or self._long_only:
            return ZERO
        return self._order_qty
