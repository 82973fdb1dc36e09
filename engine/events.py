"""Typed events the engine publishes on its bus. Subscribers (journal, alert router, tests)
decide what to do with them; the engine never calls the chat layer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum, StrEnum

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
    """A JSON-friendly view of an event (attachments left out)."""
    payload: dict[str, object] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, bytes):
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
        payload[f.name] = _plain(value)
    return payload


def _plain(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal | datetime):
        return str(value)
    return value
