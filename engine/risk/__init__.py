"""Risk: the pre-trade gate and the one owner of the trading state."""

from engine.risk.gate import (
    PDT_MIN_EQUITY,
    LossHaltLatch,
    RejectReason,
    RiskContext,
    RiskDecision,
    RiskGate,
    loss_limit_breached,
    order_only_reduces,
    reduces_position,
)
from engine.risk.state import Cause, StatePersistence, StateRecord, TradingStateController

__all__ = [
    "PDT_MIN_EQUITY",
    "Cause",
    "LossHaltLatch",
    "RejectReason",
    "RiskContext",
    "RiskDecision",
    "RiskGate",
    "StatePersistence",
    "StateRecord",
    "TradingStateController",
    "loss_limit_breached",
    "order_only_reduces",
    "reduces_position",
]
