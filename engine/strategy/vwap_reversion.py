"""VWAP mean reversion: buy when the close is below the session VWAP and RSI says oversold,
sell when it is above VWAP and RSI says overbought. The VWAP starts again at each session's
open; RSI runs across days."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.domain import Bar, Side
from engine.strategy.base import ParamsError, Signal, Strategy
from engine.strategy.indicators import RSI, SessionVWAP

_HUNDRED = Decimal(100)


class VWAPReversionParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rsi_period: int = Field(default=14, gt=1)
    """RSI length, in bars (Wilder's smoothing)."""
    oversold: Decimal = Field(default=Decimal(30), gt=0, lt=100)
    """Buy only when RSI is at or below this."""
    overbought: Decimal = Field(default=Decimal(70), gt=0, lt=100)
    """Sell only when RSI is at or above this; larger than ``oversold``."""
    band_pct: Decimal = Field(default=Decimal(0), ge=0, lt=100)
    """How far from VWAP, in percent, the close must be (0: any distance)."""
    session_open: time = time(9, 30)
    """New York time the session, and its VWAP, starts each day."""

    @model_validator(mode="after")
    def _overbought_above_oversold(self) -> VWAPReversionParams:
        if self.overbought <= self.oversold:
            raise ParamsError(
                "the overbought threshold must be larger than the oversold one",
                "oversold",
                "overbought",
            )
        return self


class VWAPReversion(Strategy[VWAPReversionParams]):
    name = "vwap_reversion"
    Params = VWAPReversionParams

    def __init__(self, params: VWAPReversionParams, symbol: str) -> None:
        super().__init__(params, symbol)
        self._vwap = SessionVWAP(params.session_open)
        self._rsi = RSI(params.rsi_period)
        self._below = 1 - params.band_pct / _HUNDRED
        self._above = 1 + params.band_pct / _HUNDRED

    @property
    def warmup_bars(self) -> int:
        return self.params.rsi_period + 1

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        self._vwap.add(bar)
        self._rsi.add(bar.close)
        if not (self._rsi.ready and self._vwap.ready and self._vwap.in_session(bar)):
            return None
        vwap, rsi, p = self._vwap.value, self._rsi.value, self.params
        if bar.close < vwap * self._below and rsi <= p.oversold:
            side, where, limit = Side.BUY, "below", f"<= {p.oversold}"
        elif bar.close > vwap * self._above and rsi >= p.overbought:
            side, where, limit = Side.SELL, "above", f">= {p.overbought}"
        else:
            return None
        reason = (
            f"close {bar.close} {where} VWAP {float(vwap):.2f}, "
            f"RSI{p.rsi_period} {float(rsi):.1f} {limit}"
        )
        return Signal(side, reason)
