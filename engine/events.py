"""Typed events the engine publishes on its bus. Subscribers (journal, alert router, tests)
decide what to do with them; the engine never calls the chat layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

from engine.domain import Fill, OrderStatus, Side, TradingState


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    ts: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Event):
    old: TradingState
    new: TradingState
    actor: str
    reason: str
    cause: str = "manual"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdated(Event):
    """An order changed status (submitted, cancelled, rejected by the broker, expired...)."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    status: OrderStatus
    filled_qty: Decimal
    reason: str = ""
    strategy: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FillReceived(Event):
    fill: Fill
    position_qty: Decimal
    realized_pnl: Decimal
    """Realized P&L this fill produced (zero when it only opened or added)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskRejected(Event):
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    reason: str
    """Machine-readable reason code (a ``RejectReason`` value)."""
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileDrift(Event):
    """Local state disagreed with the broker and was corrected to the broker's."""

    kind: str
    """``position``, ``order``, ``cash`` or ``fill``."""
    key: str
    local: str
    broker: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionChanged(Event):
    component: str
    """``market_data``, ``trade_updates``, ``broker`` or ``discord``."""
    up: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineError(Event):
    component: str
    message: str
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAudited(Event):
    """A trader command ran (or was refused); control commands are echoed to system-alerts."""

    actor: str
    command: str
    args: str
    ok: bool
    result: str
    control: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(Event):
    """A free-form message for a channel kind (boot report, end-of-day report, heartbeat...)."""

    kind: str
    title: str
    text: str
    severity: Severity = Severity.INFO
    fields: dict[str, str] = field(default_factory=dict)
    attachment: bytes | None = None
    attachment_name: str = ""


def event_payload(event: Event) -> dict[str, object]:
    """A JSON-friendly view of an event (attachments left out): enums as their value,
    ``Decimal`` and ``datetime`` as text, a nested record (a fill) as a dict of the same.
    Journaled for every event, three per order: what to do with a value is found once per
    type (``dataclasses.asdict`` deep-copied every value of a fill, most of the cost)."""
    payload: dict[str, object] = {}
    for name in _field_names(type(event)):
        value = getattr(event, name)
        convert = _converter(type(value))
        if convert is _SKIP:
            continue
        payload[name] = value if convert is None else convert(value)
    return payload


def _record(value: Any) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in _field_names(type(value)):
        field_value = getattr(value, name)
        convert = _converter(type(field_value))
        out[name] = field_value if convert is None or convert is _SKIP else convert(field_value)
    return out


def _enum_value(value: Enum) -> object:
    return value._value_  # (``value`` is a Python-level property: two calls a read)


def _skip(value: object) -> object:
    return value


_SKIP: Callable[[Any], object] = _skip
_CONVERTERS: dict[type, Callable[[Any], object] | None] = {}
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _converter(kind: type) -> Callable[[Any], object] | None:
    """None: the value as it is."""
    try:
        return _CONVERTERS[kind]
    except KeyError:
        pass
    convert: Callable[[Any], object] | None = None
    if issubclass(kind, bytes):
        convert = _SKIP
    elif issubclass(kind, Enum):
        convert = _enum_value
    elif issubclass(kind, Decimal | datetime):
        convert = str
    elif dataclasses.is_dataclass(kind):
        convert = _record
    _CONVERTERS[kind] = convert
    return convert


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names
