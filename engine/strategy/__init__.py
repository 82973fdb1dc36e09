"""Strategies: pure functions of bar history that emit signals."""

from engine.strategy.base import Signal, Strategy, bars_to_frame, build_strategy
from engine.strategy.golden_cross import GoldenCross

__all__ = ["GoldenCross", "Signal", "Strategy", "bars_to_frame", "build_strategy"]
