"""The strategy contract: what a strategy is given, what it may return, the hooks it may use.

A strategy is a class in one Python file. The host (``engine.strategy.host``) makes one
instance per symbol it trades, so ``self`` holds that symbol's state, and calls ``on_bar``
once for every closed bar of that symbol, oldest first: the warm-up history, then each live
bar. It never sees a bar before it has closed, so it cannot look ahead. The same object runs
on live data, in the replay and in the backtest. See docs/strategies.md.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from engine.clock import trading_day
from engine.domain import Bar, Fill, Side


class NoParams(BaseModel):
    """The parameters of a strategy that has none."""

    model_config = ConfigDict(frozen=True, extra="forbid")


P = TypeVar("P", bound=BaseModel)


class ParamsError(ValueError):
    """Raise it from a ``Params`` validator to name the parameters a check is about, so the
    error names their settings (``STRATEGY_FAST, STRATEGY_SLOW: ...``)."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True, slots=True)
class Signal:
    """What a strategy wants: ``BUY`` means "be long", ``SELL`` "be out, or short".

    Leave ``qty`` unset and the host sizes the order from the strategy's settings (order
    size, long-only); set it (positive) to choose the quantity yourself.
    """

    side: Side
    reason: str = ""
    qty: Decimal | None = None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Strategy(ABC, Generic[P]):
    """Subclass this, declare ``Params`` (a pydantic model: the settings validate against
    it) and implement ``on_bar``. Every other hook is optional."""

    Params: ClassVar[type[BaseModel]] = NoParams
    name: ClassVar[str] = ""
    """What orders, P&L and alerts call it unless the settings name it; default: the class
    name in snake case (``MeanRevert`` -> ``mean_revert``)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = _snake(cls.__name__)

    def __init__(self, params: P, symbol: str) -> None:
        self.params = params
        self.symbol = symbol

    @property
    def warmup_bars(self) -> int:
        """Bars this strategy must have seen before it may trade. The host asks for exactly
        this much history and ignores signals until it has been seen."""
        return 0

    @abstractmethod
    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        """One closed bar of ``self.symbol``; ``position`` is the signed quantity held
        (negative = short). Update your state and return a ``Signal`` to trade.

        Called for every bar, including warm-up bars and bars the host cannot act on (an
        order still open, trading halted): keep state updates unconditional.
        """

    def on_start(self, history: Sequence[Bar], position: Decimal) -> None:
        """Warm up from ``history`` (oldest first, at most ``warmup_bars``) before the first
        live bar. The default feeds it through ``on_day_start``/``on_bar`` exactly as live
        bars are fed, ignoring the signals; override it to warm up differently."""
        day: date | None = None
        for bar in history:
            bar_day = trading_day(bar.ts)
            if bar_day != day:
                if day is not None:
                    self.on_day_end(day)
                self.on_day_start(bar_day)
                day = bar_day
            self.on_bar(bar, position)

    def on_fill(self, fill: Fill) -> None:
        """A fill of one of this strategy's own orders for ``self.symbol``."""

    def on_day_start(self, day: date) -> None:
        """Before the first bar of trading day ``day`` (New York date)."""

    def on_day_end(self, day: date) -> None:
        """After the last bar of ``day``: called when the next day's first bar arrives, or
        when the run ends."""
