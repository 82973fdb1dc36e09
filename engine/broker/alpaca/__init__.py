"""The Alpaca venue: broker adapter (REST + trade-update stream) and its factory."""

from engine.broker.alpaca.adapter import AlpacaBroker
from engine.broker.alpaca.factory import build_alpaca
from engine.broker.alpaca.trade_stream import TradeUpdateStream

__all__ = ["AlpacaBroker", "TradeUpdateStream", "build_alpaca"]
