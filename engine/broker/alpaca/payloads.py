"""Our domain types -> the request bodies and query values Alpaca's trading API takes.

Quantities and prices go as the decimal strings Alpaca's spec documents (alpaca-py's request
models hold them as ``float``): the adapter posts these bodies through the client's own
``post``, which keeps its authentication and base URL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.broker.alpaca.convert import decimal_text
from engine.broker.port import BrokerOrder
from engine.domain import ZERO, OrderRequest, OrderType
from engine.errors import BrokerRejected

CLIENT_ORDER_ID_MAX = 128  # Alpaca's limit


def order_body(request: OrderRequest) -> dict[str, str]:
    """The JSON body of ``POST /v2/orders``; ``BrokerRejected`` for what Alpaca would refuse."""
    cid = request.client_order_id
    if not request.symbol.strip():
        raise BrokerRejected(f"order {cid} is invalid: no symbol")
    if not cid or len(cid) > CLIENT_ORDER_ID_MAX:
        raise BrokerRejected(f"order {cid!r} is invalid: client_order_id must be 1-128 chars")
    if not request.qty.is_finite() or request.qty <= ZERO:
        raise BrokerRejected(f"order {cid} is invalid: qty must be positive, not {request.qty}")
    body = {
        "symbol": request.symbol,
        "qty": decimal_text(request.qty),
        "side": request.side.value,
        "type": request.order_type.value,
        "time_in_force": request.time_in_force.value,
        "client_order_id": cid,
    }
    if request.order_type is OrderType.LIMIT:
        price = request.limit_price
        if price is None:
            raise BrokerRejected(f"{cid}: a limit order needs a price")
        if not price.is_finite() or price <= ZERO:
            raise BrokerRejected(f"order {cid} is invalid: limit price must be positive")
        body["limit_price"] = decimal_text(price)
    return body


def same_order(existing: BrokerOrder, request: OrderRequest) -> bool:
    """Whether the order Alpaca holds under ``request``'s client order id is that order."""
    return (
        existing.symbol == request.symbol.upper()
        and existing.side is request.side
        and existing.qty == request.qty
    )


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
