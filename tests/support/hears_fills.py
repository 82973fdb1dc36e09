"""The golden cross, noting every fill it hears: for when a strategy hears its fills."""

from __future__ import annotations

from typing import ClassVar

from engine.domain import Fill
from engine.strategy.golden_cross import GoldenCross


class HearsFills(GoldenCross):
    heard: ClassVar[list[str]] = []
    """Execution ids, in the order any instance heard them."""

    def on_fill(self, fill: Fill) -> None:
        HearsFills.heard.append(fill.execution_id)
