"""Rows the journal hands back, the text encoding every column uses, and row mappers.

Decimals are stored as ``str(Decimal)`` and datetimes as fixed-width ISO-8601 UTC text, so a
value read back is exactly the value written (same digits, same exponent, same microsecond)
and timestamp columns sort chronologically as plain text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from engine.domain import (
    ZERO,
    Fill,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TimeText,
    TradingState,
)
from engine.orders import Order

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TradingStateRecord:
    """One trading-state change: ``ts`` is when it happened, ``recorded_at`` when we wrote it."""

    state: TradingState
    actor: str
    reason: str
    cause: str
    ts: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One trader command and its outcome."""

    actor: str
    command: str
    args: str
    ok: bool
    result: str
    ts: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """Something that could not be applied, kept as received: ``payload`` is JSON text (an
    object; text that was not even parseable is kept as ``{"raw": ...}``)."""

    source: str
    payload: str
    reason: str
    ts: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class EquitySnapshot:
    """Account equity at ``ts``, for charts. ``day_pnl`` is None when the day's start is unknown."""

    ts: datetime
    equity: Decimal
    cash: Decimal
    day_pnl: Decimal | None
    gross_exposure: Decimal
    net_exposure: Decimal


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One journal event. Decimals, datetimes and enums in ``payload`` come back as strings."""

    kind: str
    payload: dict[str, Any]
    event_time: datetime
    recorded_at: datetime


def dec_to_text(value: Decimal, owner: str, name: str) -> str:
    """A row's Decimal field as text; a value it refuses is named ``owner.name`` (built only
    then: rows are written on every save of an order or fill)."""
    # A float here would be stored with its binary noise: refuse it rather than convert.
    if not isinstance(value, Decimal):
        raise TypeError(f"{owner}.{name}: expected Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{owner}.{name}: {value} is not a finite number")
    return str(value)


def opt_dec_to_text(value: Decimal | None, owner: str, name: str) -> str | None:
    return None if value is None else dec_to_text(value, owner, name)


def text_to_dec(text: str) -> Decimal:
    return Decimal(text)


def opt_text_to_dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


# Always six fractional digits: equal widths make text order the same as time order.
ts_to_text = TimeText(lambda utc: utc.isoformat(timespec="microseconds"))


def text_to_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def opt_text_to_ts(text: str | None) -> datetime | None:
    return None if text is None else text_to_ts(text)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value._value_
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot store {type(value).__name__} in a journal payload")


_PAYLOAD_JSON = json.JSONEncoder(default=_json_default, separators=(",", ":")).encode
"""``json.dumps`` with these arguments, built once (``dumps`` builds an encoder per call)."""


def payload_to_json(payload: Mapping[str, object]) -> str:
    return _PAYLOAD_JSON(payload if type(payload) is dict else dict(payload))


def json_to_payload(text: str) -> dict[str, Any]:
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise ValueError("journal payload is not a JSON object")
    return loaded


# ----- rows <-> domain objects (column order as in engine.store.schema) ----------------------

Row = tuple[object, ...]


def order_to_row(order: Order, recorded_at: str) -> Row:
    cid = order.client_order_id
    updated = order.updated_at
    return (
        cid,
        order.symbol,
        order.side._value_,
        dec_to_text(order.qty, cid, "qty"),
        order.order_type._value_,
        opt_dec_to_text(order.limit_price, cid, "limit_price"),
        order.time_in_force._value_,
        order.strategy,
        order.status._value_,
        order.broker_order_id,
        dec_to_text(order.filled_qty, cid, "filled_qty"),
        opt_dec_to_text(order.avg_fill_price, cid, "avg_fill_price"),
        order.reason,
        ts_to_text(order.created_at, field=f"{cid}.created_at"),
        None if updated is None else ts_to_text(updated, field=f"{cid}.updated_at"),
        recorded_at,
    )


def order_from_row(row: sqlite3.Row, fills: Sequence[sqlite3.Row] = ()) -> Order:
    """Rebuild an order; ``fills`` (rows with execution_id, qty, price) give its execution ids.

    Fills are durable and order rows are written behind, so after a crash an order row can lag
    its fills: when the fills add up to more than the row says, the fills win.
    """
    order = Order(
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        qty=text_to_dec(row["qty"]),
        created_at=text_to_ts(row["created_at"]),
        order_type=OrderType(row["order_type"]),
        limit_price=opt_text_to_dec(row["limit_price"]),
        time_in_force=TimeInForce(row["time_in_force"]),
        strategy=row["strategy"],
        status=OrderStatus(row["status"]),
        broker_order_id=row["broker_order_id"],
        filled_qty=text_to_dec(row["filled_qty"]),
        avg_fill_price=opt_text_to_dec(row["avg_fill_price"]),
        reason=row["reason"],
        updated_at=opt_text_to_ts(row["updated_at"]),
        execution_ids={fill["execution_id"] for fill in fills},
    )
    filled = sum((text_to_dec(fill["qty"]) for fill in fills), ZERO)
    if filled > order.filled_qty:
        cost = sum((text_to_dec(f["qty"]) * text_to_dec(f["price"]) for f in fills), ZERO)
        log.warning(
            "order %s: stored as %s filled but its fills add up to %s; using the fills",
            order.client_order_id,
            order.filled_qty,
            filled,
        )
        order.filled_qty = filled
        order.avg_fill_price = cost / filled
        if order.status.is_open and filled >= order.qty:
            order.status = OrderStatus.FILLED
        elif order.status in (OrderStatus.PENDING, OrderStatus.SUBMITTED):
            order.status = OrderStatus.PARTIALLY_FILLED
    return order


def fill_to_row(fill: Fill, recorded_at: str) -> Row:
    eid = fill.execution_id
    owner = f"fill {eid}"
    return (
        eid,
        fill.client_order_id,
        fill.broker_order_id,
        fill.symbol,
        fill.side._value_,
        dec_to_text(fill.qty, owner, "qty"),
        dec_to_text(fill.price, owner, "price"),
        dec_to_text(fill.commission, owner, "commission"),
        ts_to_text(fill.ts, field=f"{owner}.ts"),
        recorded_at,
    )


def fill_from_row(row: sqlite3.Row) -> Fill:
    return Fill(
        execution_id=row["execution_id"],
        client_order_id=row["client_order_id"],
        broker_order_id=row["broker_order_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        qty=text_to_dec(row["qty"]),
        price=text_to_dec(row["price"]),
        ts=text_to_ts(row["ts"]),
        commission=text_to_dec(row["commission"]),
    )


def snapshot_to_row(snap: EquitySnapshot, recorded_at: str) -> Row:
    return (
        ts_to_text(snap.ts, field="snapshot.ts"),
        dec_to_text(snap.equity, "snapshot", "equity"),
        dec_to_text(snap.cash, "snapshot", "cash"),
        opt_dec_to_text(snap.day_pnl, "snapshot", "day_pnl"),
        dec_to_text(snap.gross_exposure, "snapshot", "gross_exposure"),
        dec_to_text(snap.net_exposure, "snapshot", "net_exposure"),
        recorded_at,
    )


def snapshot_from_row(row: sqlite3.Row) -> EquitySnapshot:
    return EquitySnapshot(
        ts=text_to_ts(row["ts"]),
        equity=text_to_dec(row["equity"]),
        cash=text_to_dec(row["cash"]),
        day_pnl=opt_text_to_dec(row["day_pnl"]),
        gross_exposure=text_to_dec(row["gross_exposure"]),
        net_exposure=text_to_dec(row["net_exposure"]),
    )


def state_from_row(row: sqlite3.Row) -> TradingStateRecord:
    return TradingStateRecord(
        state=TradingState(row["state"]),
        actor=row["actor"],
        reason=row["reason"],
        cause=row["cause"],
        ts=text_to_ts(row["ts"]),
        recorded_at=text_to_ts(row["recorded_at"]),
    )


def audit_from_row(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        actor=row["actor"],
        command=row["command"],
        args=row["args"],
        ok=bool(row["ok"]),
        result=row["result"],
        ts=text_to_ts(row["ts"]),
        recorded_at=text_to_ts(row["recorded_at"]),
    )


_MAX_QUARANTINE_PAYLOAD = 65_536


def quarantine_payload(payload: object) -> str:
    """``payload`` as JSON text: a mapping or dataclass as an object, anything else (text,
    bytes) as ``{"raw": text}``. Never raises; very long payloads are cut."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="replace")
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        payload = {f.name: getattr(payload, f.name) for f in dataclasses.fields(payload)}
    text: str
    if isinstance(payload, Mapping):
        try:
            text = payload_to_json(payload)
        except (TypeError, ValueError):
            text = json.dumps({"raw": repr(payload)})
    else:
        text = json.dumps({"raw": payload if isinstance(payload, str) else repr(payload)})
    if len(text) > _MAX_QUARANTINE_PAYLOAD:
        cut = text[:_MAX_QUARANTINE_PAYLOAD]
        text = json.dumps({"raw": cut, "truncated_from": len(text)})
    return text


def quarantine_from_row(row: sqlite3.Row) -> QuarantineRecord:
    return QuarantineRecord(
        source=row["source"],
        payload=row["payload"],
        reason=row["reason"],
        ts=text_to_ts(row["ts"]),
        recorded_at=text_to_ts(row["recorded_at"]),
    )


def event_from_row(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        kind=row["kind"],
        payload=json_to_payload(row["payload"]),
        event_time=text_to_ts(row["event_time"]),
        recorded_at=text_to_ts(row["recorded_at"]),
    )


R = TypeVar("R")

BadRow = tuple[dict[str, object], str]
"""A journal row that cannot be read back (its columns) and why."""


def convert_rows(
    rows: Iterable[sqlite3.Row], convert: Callable[[sqlite3.Row], R], bad: list[BadRow] | None
) -> list[R]:
    """``convert`` each row; with ``bad``, a row that cannot be converted goes there (its
    columns, why) instead of raising."""
    if bad is None:
        return [convert(row) for row in rows]
    out: list[R] = []
    for row in rows:
        try:
            out.append(convert(row))
        except (ValueError, ArithmeticError, KeyError, TypeError) as exc:
            bad.append(
                (dict(zip(row.keys(), tuple(row), strict=True)), f"{type(exc).__name__}: {exc}")
            )
    return out
