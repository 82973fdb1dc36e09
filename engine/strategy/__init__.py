"""Strategies as plug-ins: the contract, the host that runs them, the built-ins."""

from engine.strategy.base import NoParams, Signal, Strategy
from engine.strategy.golden_cross import GoldenCross, GoldenCrossParams
from engine.strategy.host import OrderIntent, StrategyHost, size_order
from engine.strategy.indicators import RSI, RollingMean, SessionVWAP
from engine.strategy.loader import StrategyConfigError, StrategySpec, load_strategies
from engine.strategy.vwap_reversion import VWAPReversion, VWAPReversionParams

__all__ = [
    "RSI",
    "GoldenCross",
    "GoldenCrossParams",
    "NoParams",
    "OrderIntent",
    "RollingMean",
    "SessionVWAP",
    "Signal",
    "Strategy",
    "StrategyConfigError",
    "StrategyHost",
    "StrategySpec",
    "VWAPReversion",
    "VWAPReversionParams",
    "load_strategies",
    "size_order",
]
