"""The order state machine and deterministic client order ids."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from engine.domain import (
    ZERO,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    ensure_utc,
)
from engine.errors import InvalidTransition, OverfillError

S = OrderStatus

# Every legal move. A fill may race the broker's acknowledgement (PENDING -> *_FILLED) or a
# cancel request (CANCEL_PENDING -> *_FILLED); a refused cancel returns the order to where it
# was (CANCEL_PENDING -> SUBMITTED / PARTIALLY_FILLED). Terminal states go nowhere.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset(
        {S.SUBMITTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED}
    ),
    S.SUBMITTED: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_PENDING, S.CANCELLED, S.REJECTED, S.EXPIRED}
    ),
    S.PARTIALLY_FILLED: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_PENDING, S.CANCELLED, S.EXPIRED}
    ),
    S.CANCEL_PENDING: frozenset(
        {S.SUBMITTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}
    ),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}

_ID_SAFE = re.compile(r"[^A-Za-z0-9._]+")


def make_client_order_id(strategy: str, symbol: str, signal_time: datetime, tag: str = "") -> str:
    """A client order id that is the same every time for the same signal.

    A restarted engine that sees the same bar again regenerates the same id, so the broker
    (which refuses a duplicate ``client_order_id``) and our own duplicate check stop a second
    order. Readable prefix for humans, hash suffix for uniqueness; at most 48 characters
    (Alpaca allows 128).
    """
    ts = signal_time if signal_time.tzinfo is UTC else ensure_utc(signal_time, field="signal_time")
    iso, stamp = _id_times(ts)
    digest = hashlib.sha256(f"{strategy}|{symbol}|{iso}|{tag}".encode()).hexdigest()[:12]
    return f"{_id_prefix(strategy, symbol)}-{stamp}-{digest}"


@functools.lru_cache(maxsize=64)
def _id_times(ts: datetime) -> tuple[str, str]:
    """The signal time as the hash reads it and as the id shows it (``%Y%m%dT%H%M%S``
    spelt out: strftime was most of the cost of an id); a minute's orders share their bar's
    time."""
    stamp = f"{ts.year:04}{ts.month:02}{ts.day:02}T{ts.hour:02}{ts.minute:02}{ts.second:02}"
    return ts.isoformat(), stamp


@functools.lru_cache(maxsize=4096)
def _id_prefix(strategy: str, symbol: str) -> str:
    """The readable part of an id: strategy and symbol with unsafe characters dropped."""
    return f"{_ID_SAFE.sub('', strategy)[:10] or 'x'}-{_ID_SAFE.sub('', symbol)[:8]}"


@dataclass
class Order:
    """Our view of one order, driven by broker acknowledgements and fills."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    created_at: datetime
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    strategy: str = ""
    status: OrderStatus = OrderStatus.PENDING
    broker_order_id: str = ""
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal | None = None
    reason: str = ""
    updated_at: datetime | None = None
    execution_ids: set[str] = field(default_factory=set)
    complete_executions: bool = field(default=True, compare=False)
    """Every execution of this order the journal holds is in ``execution_ids`` (False for an
    order adopted under an id the journal already knew: only the journal can tell)."""
    notional: Decimal | None = None
    """A notional order (money, not shares; placed by hand): ``qty`` grows with what
    executes, and only the broker's status says it is filled."""

    @classmethod
    def from_request(cls, request: OrderRequest, created_at: datetime) -> Order:
        return cls(
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            qty=request.qty,
            created_at=ensure_utc(created_at),
            order_type=request.order_type,
            limit_price=request.limit_price,
            time_in_force=request.time_in_force,
            strategy=request.strategy,
            updated_at=ensure_utc(created_at),
        )

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def can_transition(self, new: OrderStatus) -> bool:
        return new in TRANSITIONS[self.status]

    def transition(self, new: OrderStatus, ts: datetime, reason: str = "") -> None:
        """Move to ``new`` or raise ``InvalidTransition`` naming both states."""
        if new not in TRANSITIONS[self.status]:
            raise InvalidTransition(
                f"order {self.client_order_id}: cannot go from {self.status.value} to {new.value}"
            )
        if new is S.FILLED and self.filled_qty != self.qty:
            raise InvalidTransition(
                f"order {self.client_order_id}: cannot be filled with "
                f"{self.filled_qty} of {self.qty} executed"
            )
        self.status = new
        self.updated_at = ensure_utc(ts)
        if reason:
            self.reason = reason

    def apply_fill(self, fill: Fill) -> bool:
        """Apply one execution. Returns False (and changes nothing) for a repeat.

        Fills may arrive in any order: the average price is a quantity-weighted mean, so the
        result does not depend on arrival order.
        """
        if fill.execution_id in self.execution_ids:
            return False
        if fill.client_order_id != self.client_order_id:
            raise InvalidTransition(
                f"fill {fill.execution_id} is for order {fill.client_order_id}, "
                f"not {self.client_order_id}"
            )
        if fill.side is not self.side or fill.symbol != self.symbol:
            raise InvalidTransition(
                f"fill {fill.execution_id} ({fill.side.value} {fill.symbol}) does not match "
                f"order {self.client_order_id} ({self.side.value} {self.symbol})"
            )
        if fill.qty <= ZERO:
            raise InvalidTransition(f"fill {fill.execution_id}: quantity must be positive")
        if self.status.is_terminal:
            raise InvalidTransition(
                f"order {self.client_order_id}: cannot take fill {fill.execution_id} "
                f"when {self.status.value}"
            )
        new_filled = self.filled_qty + fill.qty
        if self.notional is not None:
            self.qty = max(self.qty, new_filled)
        if new_filled > self.qty:
            raise OverfillError(
                f"order {self.client_order_id}: fill {fill.execution_id} of {fill.qty} "
                f"would fill {new_filled} of {self.qty}"
            )
        previous_cost = (self.avg_fill_price or ZERO) * self.filled_qty
        self.avg_fill_price = (previous_cost + fill.price * fill.qty) / new_filled
        self.filled_qty = new_filled
        self.execution_ids.add(fill.execution_id)
        if new_filled == self.qty and self.notional is None:
            self.status = S.FILLED
        elif self.status is not S.CANCEL_PENDING:
            # A partial fill while a cancel is pending leaves the cancel pending.
            self.status = S.PARTIALLY_FILLED
        self.updated_at = ensure_utc(fill.ts)
        return True

    def sync_terminal(
        self,
        status: OrderStatus,
        filled_qty: Decimal,
        avg_fill_price: Decimal | None,
        ts: datetime,
        reason: str = "",
    ) -> None:
        """Reconciliation only: the broker says this order is finished, and the broker is the
        truth. Used after missed fills were recovered, when the order's own executions could
        not all be matched (for example a crash between a fill and its order record)."""
        if not status.is_terminal:
            raise InvalidTransition(f"sync_terminal needs a terminal state, not {status.value}")
        if self.status.is_terminal:
            raise InvalidTransition(f"order {self.client_order_id}: already {self.status.value}")
        self.status = status
        self.filled_qty = filled_qty
        self.avg_fill_price = avg_fill_price
        self.updated_at = ensure_utc(ts)
        if reason:
            self.reason = reason
