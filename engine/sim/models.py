"""The simulator's data model: pricing rules (slippage, commission) and the venue's records.

Records follow Alpaca's order model and trade-update stream closely (field names, status
words), so a fake Alpaca server can translate them to JSON one field at a time. They are
frozen: the exchange replaces a record on every change and hands out the record itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import UnionType
from typing import Any, NamedTuple, TypeVar, get_args, get_type_hints

from engine.domain import CENT, ZERO, OrderType, Side, TimeInForce, TimeText, money, parse_utc

ONE = Decimal(1)
SUB_PENNY = Decimal("0.0001")
BPS = Decimal(10_000)

# Alpaca's order status words.
NEW = "new"
ACCEPTED = "accepted"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELED = "canceled"
EXPIRED = "expired"
REJECTED = "rejected"
PENDING_CANCEL = "pending_cancel"
OPEN_STATUSES = frozenset({NEW, ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL})


def round_half_up(value: Decimal, step: Decimal) -> Decimal:
    return value.quantize(step, rounding=ROUND_HALF_UP)


def tick_size(price: Decimal) -> Decimal:
    """Reg NMS quoting increments: $0.01 at or above $1, $0.0001 below."""
    return CENT if price >= ONE else SUB_PENNY


@dataclass(frozen=True, slots=True)
class SlippageModel:
    """Market orders trade ``bps`` basis points worse than the last price.

    Buys pay ``price * (1 + bps/10000)``, sells receive ``price * (1 - bps/10000)``, rounded
    half-up to the tick (cents at or above $1, hundredths of a cent below). A zero-bps model
    returns the market's own price untouched. Limit orders get the same slipped price but
    never worse than their limit.
    """

    bps: Decimal = ZERO

    def __post_init__(self) -> None:
        if not self.bps.is_finite() or self.bps < ZERO:
            raise ValueError(f"slippage bps must be >= 0, got {self.bps}")

    def apply(self, price: Decimal, side: Side) -> Decimal:
        if self.bps == ZERO:
            return price
        slipped = price * (ONE + side.sign * self.bps / BPS)
        return round_half_up(slipped, tick_size(slipped))

    def fill_price(self, price: Decimal, side: Side, limit: Decimal | None = None) -> Decimal:
        """The execution price at market price ``price``, capped by ``limit`` when given."""
        slipped = self.apply(price, side)
        if limit is None:
            return slipped
        return min(slipped, limit) if side is Side.BUY else max(slipped, limit)


@dataclass(frozen=True, slots=True)
class CommissionModel:
    """``max(minimum, per_share * qty)`` per order, rounded half-up to the cent.

    A partially filled order pays, on each execution, the growth of that order total: the
    first execution pays at least the minimum, later ones pay per share only once the
    per-share total passes the minimum. An order therefore costs the same however it was
    split, and the minimum is charged once per order.
    """

    per_share: Decimal = ZERO
    minimum: Decimal = ZERO

    def __post_init__(self) -> None:
        for name, value in (("per_share", self.per_share), ("minimum", self.minimum)):
            if not value.is_finite() or value < ZERO:
                raise ValueError(f"commission {name} must be >= 0, got {value}")

    def order_total(self, filled_qty: Decimal) -> Decimal:
        """What an order that has executed ``filled_qty`` has paid in all."""
        if filled_qty <= ZERO:
            return ZERO
        return money(max(self.minimum, self.per_share * filled_qty))

    def for_execution(self, prior_filled: Decimal, qty: Decimal) -> Decimal:
        """The charge for an execution of ``qty`` on an order that had filled ``prior_filled``."""
        return self.order_total(prior_filled + qty) - self.order_total(prior_filled)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as the venue keeps it (Alpaca's order model, minus fields we never set)."""

    id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    time_in_force: TimeInForce
    limit_price: Decimal | None
    status: str
    created_at: datetime
    submitted_at: datetime
    updated_at: datetime
    filled_qty: Decimal = ZERO
    filled_avg_price: Decimal | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    expires_at: datetime | None = None
    """DAY orders: the close of the session the order trades in (not an Alpaca field)."""
    commission: Decimal = ZERO
    """Commission charged so far across this order's executions (not an Alpaca field)."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    def marketable_at(self, price: Decimal) -> bool:
        """A market order always; a limit order once the price reaches its limit."""
        if self.limit_price is None:
            return True
        return price <= self.limit_price if self.side is Side.BUY else price >= self.limit_price


class CloseOutcome(NamedTuple):
    """One symbol's result of ``close_all`` (Alpaca answers 207 with one item per symbol)."""

    symbol: str
    status: int
    order: OrderRecord | None
    message: str

    @classmethod
    def held(cls, symbol: str, requested: Decimal, held: Decimal) -> CloseOutcome:
        """Alpaca's 403 when open orders already hold ``held`` of the shares to close."""
        available = max(ZERO, requested - held)
        message = (
            f"insufficient qty available for order (requested: {requested}, available: {available})"
        )
        return cls(symbol, 403, None, message)


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One execution; maps onto an Alpaca account activity of type FILL."""

    id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal
    order_status: str
    transaction_time: datetime
    commission: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class TradeUpdateRecord:
    """One trade-update event (Alpaca's ``trade_updates`` stream); ``qty`` is this
    execution's quantity, ``position_qty`` the symbol's signed position after it."""

    event: str
    order: OrderRecord
    timestamp: datetime
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None
    commission: Decimal = ZERO


# JSON codec for the persisted state: Decimals and datetimes as strings, enums by value.

R = TypeVar("R", OrderRecord, ExecutionRecord)


_FIELD_TYPES: dict[type, dict[str, type]] = {}


def _field_types(cls: type) -> dict[str, type]:
    if cls in _FIELD_TYPES:
        return _FIELD_TYPES[cls]
    hints = get_type_hints(cls)
    resolved: dict[str, type] = {}
    for f in fields(cls):
        hint = hints[f.name]
        if isinstance(hint, UnionType):
            hint = next(arg for arg in get_args(hint) if arg is not type(None))
        resolved[f.name] = hint
    _FIELD_TYPES[cls] = resolved
    return resolved


_time_text = TimeText(datetime.isoformat)


def _encode(value: object) -> object:
    if value is None or type(value) is str:  # most fields: no isinstance chain
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, StrEnum):
        return value._value_
    return value


def _decode(kind: type, raw: Any, name: str) -> Any:
    if raw is None:
        return None
    if kind is Decimal:
        return Decimal(raw)
    if kind is datetime:
        return parse_utc(raw, field=name)
    if issubclass(kind, StrEnum):
        return kind(raw)
    return raw


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def record_to_json(record: OrderRecord | ExecutionRecord) -> dict[str, object]:
    kind = type(record)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(record))
    return {name: _encode(getattr(record, name)) for name in names}


def record_from_json(cls: type[R], data: dict[str, Any]) -> R:
    kinds = _field_types(cls)
    # Keys missing from an older file take the field's default.
    values = {name: _decode(kind, data[name], name) for name, kind in kinds.items() if name in data}
    return cls(**values)
