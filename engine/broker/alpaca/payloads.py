"""Our domain types -> the request bodies and query values Alpaca's trading API takes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alpaca.trading.enums import OrderSide
from alpaca.trading.enums import TimeInForce as AlpacaTif
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest
from alpaca.trading.requests import OrderRequest as AlpacaOrderRequest
from pydantic import ValidationError

from engine.broker.port import BrokerOrder
from engine.domain import OrderRequest, OrderType
from engine.errors import BrokerRejected

_TIF = {"day": AlpacaTif.DAY, "gtc": AlpacaTif.GTC, "ioc": AlpacaTif.IOC}


def order_payload(request: OrderRequest) -> AlpacaOrderRequest:
    common: dict[str, Any] = {
        "symbol": request.symbol,
        "qty": float(request.qty),
        "side": OrderSide.BUY if request.side.value == "buy" else OrderSide.SELL,
        "time_in_force": _TIF[request.time_in_force.value],
        "client_order_id": request.client_order_id,
    }
    try:
        if request.order_type is OrderType.LIMIT:
            if request.limit_price is None:
                raise BrokerRejected(f"{request.client_order_id}: a limit order needs a price")
            return LimitOrderRequest(limit_price=float(request.limit_price), **common)
        return MarketOrderRequest(**common)
    except ValidationError as exc:
        raise BrokerRejected(f"order {request.client_order_id} is invalid: {exc}") from None


def same_order(existing: BrokerOrder, request: OrderRequest) -> bool:
    """Whether the order Alpaca holds under ``request``'s client order id is that order."""
    return (
        existing.symbol == request.symbol.upper()
        and existing.side is request.side
        and existing.qty == request.qty
    )


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
