"""The broker port: everything the engine needs from a venue, and nothing more.

The simulator implements it (``engine.broker.sim``); Alpaca implements it
(``engine.broker.alpaca``). Every method may raise the ``BrokerError`` family from
``engine.errors``: ``BrokerRejected``/``DuplicateClientOrderId`` when the venue refused,
``BrokerUnavailable``/``BrokerTimeout``/``RateLimited`` when it could not be reached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final, Protocol, runtime_checkable

from engine.domain import (
    Account,
    Fill,
    MarketClock,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    TradingSession,
)


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker reports it."""

    broker_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    time_in_force: TimeInForce
    limit_price: Decimal | None
    status: OrderStatus
    """The venue status mapped onto our state machine."""
    broker_status: str
    """The venue's own status word (``new``, ``accepted``, ``pending_cancel``...)."""
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    submitted_at: datetime
    updated_at: datetime
    notional: Decimal | None = None
    """A notional order (money, not shares; placed by hand): its ``qty`` is what has
    executed so far, and only its status says when it is done."""


S = OrderStatus

EVENT_STATUS: Final[dict[str, OrderStatus | None]] = {
    "new": S.SUBMITTED,
    "accepted": S.SUBMITTED,
    "pending_new": S.SUBMITTED,
    "order_cancel_rejected": S.SUBMITTED,
    "pending_cancel": S.CANCEL_PENDING,
    "canceled": S.CANCELLED,
    "expired": S.EXPIRED,
    "rejected": S.REJECTED,
    # This order id is finished and a replacement (its own "new") carries on.
    "replaced": S.CANCELLED,
    # Not eligible for trading any more (rare, venue-side); what executed stays executed.
    "suspended": S.CANCELLED,
    # Still working: done for today, a trade guaranteed but not yet done, a replace pending
    # or refused, settlement maths pending. Their executions come as fills.
    "done_for_day": None,
    "stopped": None,
    "pending_replace": None,
    "order_replace_rejected": None,
    "calculated": None,
    # Executions: applied as fills, never as a status word.
    "fill": None,
    "partial_fill": None,
}
"""Every trade-update event Alpaca documents, as the order state it moves an order to (None:
no change of state)."""


@dataclass(frozen=True, slots=True)
class TradeUpdate:
    """One event from the venue's trade-update stream, shaped like Alpaca's.

    ``event`` is the venue word (see ``EVENT_STATUS``). Fill events carry ``execution_id``,
    ``price`` and ``qty`` (this execution's quantity).
    """

    event: str
    order: BrokerOrder
    ts: datetime
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None
    commission: Decimal = Decimal(0)

    def to_fill(self) -> Fill | None:
        """The execution this update reports, or None when it is not a fill."""
        if self.event not in ("fill", "partial_fill"):
            return None
        if self.execution_id is None or self.price is None or self.qty is None:
            raise ValueError(f"{self.event} update for {self.order.client_order_id} lacks fields")
        return Fill(
            execution_id=self.execution_id,
            client_order_id=self.order.client_order_id,
            broker_order_id=self.order.broker_order_id,
            symbol=self.order.symbol,
            side=self.order.side,
            qty=self.qty,
            price=self.price,
            ts=self.ts,
            commission=self.commission,
        )


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Yielded by ``trade_updates()`` after a reconnect: updates between ``down_at`` and
    ``up_at`` may have been missed, so the engine recovers fills and order states."""

    down_at: datetime
    up_at: datetime


@dataclass(frozen=True, slots=True)
class RejectedUpdate:
    """Yielded by ``trade_updates()`` for a message that was meant as a trade update but
    cannot be read (missing, non-numeric or negative fields, a damaged frame): the engine
    keeps it aside, alerts and recovers the truth from the REST API. ``raw`` is what came:
    the parsed message, or the frame's text when it was not JSON."""

    raw: object
    reason: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class CloseResult:
    """Per-symbol outcome of close-all (Alpaca answers 207 with one item per symbol)."""

    symbol: str
    ok: bool
    status: int
    """HTTP-like status per symbol: 200 accepted, 403/422 refused, 500 failed."""
    order: BrokerOrder | None = None
    message: str = ""


@runtime_checkable
class Broker(Protocol):
    name: str

    async def connect(self) -> None:
        """Open connections (trade-update stream included)."""

    async def close(self) -> None:
        """Release every connection and thread; idempotent."""

    async def submit_order(self, request: OrderRequest) -> BrokerOrder: ...

    async def cancel_all_orders(self) -> int:
        """Request cancellation of every open order; returns how many the venue accepted to
        cancel (orders it refused are not counted)."""

    async def close_all_positions(self, cancel_orders: bool = True) -> list[CloseResult]: ...

    async def get_positions(self) -> list[Position]: ...

    async def get_open_orders(self) -> list[BrokerOrder]: ...

    async def get_orders_since(self, since: datetime) -> list[BrokerOrder]:
        """Every order (any status) submitted at or after ``since``."""

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None: ...

    async def get_fills_since(self, since: datetime) -> list[Fill]:
        """Every execution at or after ``since`` (Alpaca: account activities of type FILL)."""

    async def get_account(self) -> Account: ...

    async def get_clock(self) -> MarketClock: ...

    async def get_calendar(self, start: date, end: date) -> list[TradingSession]: ...

    def trade_updates(self) -> AsyncIterator[TradeUpdate | StreamGap | RejectedUpdate]:
        """The venue's trade-update stream, for one consumer, reconnecting by itself."""
        ...
