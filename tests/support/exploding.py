"""A user strategy that raises when a test arms it: for pausing and resuming."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from engine.domain import Bar
from engine.strategy import NoParams, Signal, Strategy


class Exploding(Strategy[NoParams]):
    armed: ClassVar[bool] = False
    """While True, the next bar any instance sees raises (and disarms it)."""
    seen: ClassVar[list[str]] = []

    @property
    def warmup_bars(self) -> int:
        return 30

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        if Exploding.armed:
            Exploding.armed = False
            raise RuntimeError("division by zero in my indicator")
        Exploding.seen.append(f"{bar.symbol} {bar.ts:%H:%M}")
        return None
