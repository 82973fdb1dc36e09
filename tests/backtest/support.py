"""Bars and strategies made by hand for the backtest tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from config.settings import RiskSettings
from engine.backtest.runner import BacktestConfig
from engine.domain import Bar, Fill, Side
from engine.strategy import Signal, Strategy
from engine.strategy.loader import StrategySpec

DAY1 = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)  # Thursday 09:30 New York
DAY2 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)  # Friday 09:30
MINUTE = timedelta(minutes=1)
WIDE_RISK = RiskSettings(
    max_position_qty=Decimal(10**6),
    max_position_notional=Decimal(10**9),
    max_gross_exposure=Decimal(10**9),
    max_order_notional=Decimal(10**9),
    daily_loss_limit=Decimal(10**9),
    max_orders_per_day=10**6,
    pdt_guard=False,
)


def bars(symbol: str, start: datetime, *closes: str | int) -> list[Bar]:
    """One flat bar per minute from ``start``, at each close."""
    out = []
    for i, close in enumerate(closes):
        price = Decimal(close)
        out.append(Bar(symbol, start + i * MINUTE, price, price, price, price, Decimal(100)))
    return out


class ScriptParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    buy_at: tuple[int, ...] = ()
    """Bar numbers (0 = the first this instance sees) on which to say BUY."""
    sell_at: tuple[int, ...] = ()
    warmup: int = 0


class Scripted(Strategy[ScriptParams]):
    """Says BUY / SELL on chosen bars and records what it saw and when it was filled."""

    Params = ScriptParams
    log: ClassVar[list[str]] = []

    def __init__(self, params: ScriptParams, symbol: str) -> None:
        super().__init__(params, symbol)
        self.seen: list[Bar] = []

    @property
    def warmup_bars(self) -> int:
        return self.params.warmup

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        n = len(self.seen)
        self.seen.append(bar)
        Scripted.log.append(f"bar {bar.symbol} {bar.ts:%H:%M} close {bar.close}")
        if n in self.params.buy_at:
            return Signal(Side.BUY, f"buy on bar {n}")
        if n in self.params.sell_at:
            return Signal(Side.SELL, f"sell on bar {n}")
        return None

    def on_fill(self, fill: Fill) -> None:
        last = self.seen[-1]
        Scripted.log.append(
            f"fill {fill.side.value} {fill.qty} {fill.symbol} at {fill.price} {fill.ts:%H:%M}"
            f" after bar {last.ts:%H:%M}"
        )


def scripted(
    symbols: Sequence[str] = ("AAPL",), qty: int = 10, long_only: bool = True, **params: object
) -> StrategySpec:
    return StrategySpec(
        "scripted",
        Scripted,
        ScriptParams.model_validate(params),
        tuple(symbols),
        Decimal(qty),
        long_only,
    )


def config(
    *specs: StrategySpec, risk: RiskSettings = WIDE_RISK, **fields: object
) -> BacktestConfig:
    return BacktestConfig(specs=specs, risk=risk, **fields)  # type: ignore[arg-type]
