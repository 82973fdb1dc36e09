"""The exchange simulator: a synchronous core shared by the sim broker, the fake Alpaca
server and backtests."""

from engine.sim.exchange import SimExchange
from engine.sim.models import (
    CloseOutcome,
    CommissionModel,
    ExecutionRecord,
    OrderRecord,
    SlippageModel,
    TradeUpdateRecord,
)

__all__ = [
    "CloseOutcome",
    "CommissionModel",
    "ExecutionRecord",
    "OrderRecord",
    "SimExchange",
    "SlippageModel",
    "TradeUpdateRecord",
]
