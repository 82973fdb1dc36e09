"""Mean reversion: buy a dip under the rolling mean, sell back at the mean or at a stop."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

from engine.domain import Bar, Fill, Side
from engine.strategy import RollingMean, Signal, Strategy


class MeanRevertParams(BaseModel):
    window: int = Field(default=20, ge=2)
    """Bars in the rolling mean."""
    dip_pct: Decimal = Field(default=Decimal("0.5"), gt=0)
    """Buy when the close is this many percent under the mean."""
    stop_pct: Decimal = Field(default=Decimal(1), gt=0)
    """Sell when the close is this many percent under the price we bought at."""


class MeanRevert(Strategy[MeanRevertParams]):
    Params = MeanRevertParams

    def __init__(self, params: MeanRevertParams, symbol: str) -> None:
        super().__init__(params, symbol)
        self.mean = RollingMean(params.window)
        self.entry: Decimal | None = None

    @property
    def warmup_bars(self) -> int:
        return self.params.window

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        self.mean.add(bar.close)
        if not self.mean.ready:
            return None
        mean = self.mean.value
        if position <= 0 and bar.close < mean * (1 - self.params.dip_pct / 100):
            return Signal(Side.BUY, f"{bar.close} is under the mean {mean:.2f}")
        if position > 0 and bar.close >= mean:
            return Signal(Side.SELL, f"{bar.close} is back at the mean {mean:.2f}")
        stop = None if self.entry is None else self.entry * (1 - self.params.stop_pct / 100)
        if position > 0 and stop is not None and bar.close < stop:
            return Signal(Side.SELL, f"{bar.close} hit the stop {stop:.2f}")
        return None

    def on_fill(self, fill: Fill) -> None:
        if fill.side is Side.BUY:
            self.entry = fill.price
