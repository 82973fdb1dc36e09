"""Order intake for the simulator: validate what a client sent (as Alpaca's 422s do) and build
the venue's ``OrderRecord``. Matching and money live in ``engine.sim.exchange`` and
``engine.sim.account``."""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar
from uuid import uuid4

from engine.calendar import MarketCalendar
from engine.domain import ZERO, OrderType, Side, TimeInForce, to_decimal
from engine.errors import BrokerRejected, DuplicateClientOrderId
from engine.sim.models import ACCEPTED, NEW, OrderRecord

MAX_CLIENT_ORDER_ID = 128

E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E], value: object, name: str) -> E:
    if type(value) is kind:  # what the engine sends: no look-up by value
        return value
    try:
        return kind(str(value))
    except ValueError:
        raise BrokerRejected(f"invalid {name}: {value!r}") from None


def _decimal(value: object, name: str) -> Decimal:
    try:
        return to_decimal(value, field=name)
    except ValueError as exc:
        raise BrokerRejected(str(exc)) from None


def new_order(
    symbol: str,
    side: object,
    qty: object,
    order_type: object = OrderType.MARKET,
    time_in_force: object = TimeInForce.DAY,
    limit_price: object = None,
    client_order_id: str | None = None,
    *,
    now: datetime,
    calendar: MarketCalendar,
    used_client_ids: Container[str],
) -> OrderRecord:
    """A new order record, ``new`` while the market is open, ``accepted`` while closed.
    Raises ``BrokerRejected`` for a malformed order and ``DuplicateClientOrderId`` for an
    id already in ``used_client_ids``."""
    symbol = symbol.strip().upper()
    if not symbol:
        raise BrokerRejected("symbol is required")
    side_ = _enum(Side, side, "side")
    type_ = _enum(OrderType, order_type, "type")
    tif = _enum(TimeInForce, time_in_force, "time_in_force")
    amount = _decimal(qty, "qty")
    if amount <= ZERO:
        raise BrokerRejected("qty must be > 0")
    limit: Decimal | None = None
    if type_ is OrderType.LIMIT:
        if limit_price is None:
            raise BrokerRejected("limit_price is required for limit orders")
        limit = _decimal(limit_price, "limit_price")
        if limit <= ZERO:
            raise BrokerRejected("limit_price must be > 0")
    elif limit_price is not None:
        raise BrokerRejected("limit_price is only allowed for limit orders")
    if amount != amount.to_integral_value() and tif is not TimeInForce.DAY:
        raise BrokerRejected("fractional orders must be DAY orders")
    cid = client_order_id or str(uuid4())
    if len(cid) > MAX_CLIENT_ORDER_ID:
        raise BrokerRejected(f"client_order_id must be at most {MAX_CLIENT_ORDER_ID} chars")
    if cid in used_client_ids:
        raise DuplicateClientOrderId(f"client_order_id must be unique: {cid}")
    expires = calendar.trading_session_at(now).close if tif is TimeInForce.DAY else None
    return OrderRecord(
        id=str(uuid4()),
        client_order_id=cid,
        symbol=symbol,
        side=side_,
        qty=amount,
        type=type_,
        time_in_force=tif,
        limit_price=limit,
        status=NEW if calendar.is_open(now) else ACCEPTED,
        created_at=now,
        submitted_at=now,
        updated_at=now,
        expires_at=expires,
    )
