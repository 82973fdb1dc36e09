"""What we know about our orders: broker snapshots and venue words turned into order states,
orders the broker has that we did not know adopted, and waiting for the next change.

``ExecutionManager`` builds on this with submission and the fill path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime

from engine.broker.port import EVENT_STATUS, BrokerOrder
from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import ZERO, OrderStatus
from engine.events import OrderUpdated
from engine.order_book import OrderBook, order_from_broker
from engine.orders import Order
from engine.store.journal import Journal

log = logging.getLogger(__name__)
S = OrderStatus


class OrderTracker:
    def __init__(self, *, journal: Journal, bus: EventBus, clock: Clock, orders: OrderBook) -> None:
        self.journal = journal
        self.bus = bus
        self.clock = clock
        self.orders = orders
        self.known_ids: set[str] = set()
        """Client ids we have used or seen (the risk gate refuses them for new orders)."""
        self.in_flight: set[str] = set()
        """Client ids of submits awaiting the broker's answer."""
        self._waiters: set[asyncio.Event] = set()
        self._expected_from: str | None = None

    def apply_broker_record(
        self, order: Order, record: BrokerOrder, *, authoritative: bool = False
    ) -> None:
        """Bring an order's status in line with a broker snapshot.

        Normally executions arrive as fills, so a FILLED snapshot only confirms the order is
        live. ``authoritative`` (recovery and reconciliation, after missed fills were applied)
        accepts the broker's final state even when not every execution could be matched.
        """
        if record.broker_order_id and order.broker_order_id != record.broker_order_id:
            self.orders.link_broker_id(order, record.broker_order_id)
        target = record.status
        closes = target is S.FILLED or not order.can_transition(target)
        if authoritative and target.is_terminal and order.is_open and closes:
            order.sync_terminal(
                target,
                record.filled_qty,
                record.filled_avg_price,
                self.clock.now(),
                record.broker_status,
            )
            self.order_changed(order)
            return
        if target in (S.FILLED, S.PARTIALLY_FILLED):
            target = S.SUBMITTED
        reason = record.broker_status if target.is_terminal else ""
        self.set_status(order, target, reason)

    def set_status(self, order: Order, target: OrderStatus, reason: str = "") -> None:
        if target is order.status or not order.can_transition(target):
            if target is not order.status:
                log.debug(
                    "ignoring stale %s for %s (%s)",
                    target.value,
                    order.client_order_id,
                    order.status.value,
                )
            return
        order.transition(target, self.clock.now(), reason)
        self.order_changed(order)

    def order_changed(self, order: Order) -> None:
        self.journal.save_order(order)
        self.bus.publish(self.order_event(order))
        self.notify()

    def order_event(self, order: Order) -> OrderUpdated:
        """The order as it is now, as an event."""
        return OrderUpdated(
            ts=self.clock.now(),
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            status=order.status,
            filled_qty=order.filled_qty,
            reason=order.reason,
            strategy=order.strategy,
        )

    def apply_status_event(self, order: Order, event: str) -> None:
        """A venue word that is not a fill (``new``, ``canceled``...) applied to ``order``."""
        if event not in EVENT_STATUS:
            log.warning(
                "unknown trade-update event %r for %s; ignored", event, order.client_order_id
            )
        status = EVENT_STATUS.get(event)
        if status is None:
            return
        reason = event if status.is_terminal else ""
        if order.status is S.CANCEL_PENDING and status is S.SUBMITTED:
            if event != "order_cancel_rejected":
                return  # a late "new"/"accepted" says nothing about the pending cancel
            # A refused cancel puts the order back where its executions say it is.
            status = S.PARTIALLY_FILLED if order.filled_qty > ZERO else S.SUBMITTED
        self.set_status(order, status, reason)

    def track_broker_order(self, record: BrokerOrder, *, strategy: str) -> Order:
        """Register an order the broker created for us (close-all), before its updates."""
        return self.orders.get(record.client_order_id) or self.adopt(record, strategy)

    @contextlib.contextmanager
    def expecting_broker_orders(self, strategy: str) -> Iterator[None]:
        """While inside, orders the broker creates for us (close-all's close orders, whose
        updates can beat the HTTP answer) are adopted quietly under ``strategy``."""
        self._expected_from = strategy
        try:
            yield
        finally:
            self._expected_from = None

    def on_unknown_order(self, record: BrokerOrder) -> Order:
        """Adopt an open order the broker has and we did not know (placed before a crash)."""
        strategy = self._expected_from or ""
        if strategy:
            log.info("tracking %s order %s", strategy, record.client_order_id)
        else:
            log.warning("adopting unknown broker order %s", record.client_order_id)
        order = self.adopt(record, strategy)
        self.apply_broker_record(order, record)
        return order

    def prune(self, before: datetime) -> int:
        """Forget closed orders created before ``before`` and their client ids (the journal
        keeps both; a restart reads back the last few days), so neither grows without bound
        in a long run. Returns how many."""
        pruned = self.orders.prune(before)
        self.known_ids.difference_update(pruned)
        return len(pruned)

    def force_close(self, order: Order, reason: str) -> None:
        """The broker no longer has this order open and cannot say more: stop tracking it."""
        self.set_status(order, S.CANCELLED, reason)

    def known_order(self, record: BrokerOrder) -> Order | None:
        return self.orders.get(record.client_order_id) or self.orders.by_broker_id(
            record.broker_order_id
        )

    def order_for(self, record: BrokerOrder) -> Order:
        order = self.known_order(record)
        return order if order is not None else self.on_unknown_order(record)

    def adopt(self, record: BrokerOrder, strategy: str = "") -> Order:
        order = order_from_broker(record)
        # Executions are applied as fills, so the adopted order starts with none.
        order.filled_qty, order.avg_fill_price = ZERO, None
        if order.status in (S.FILLED, S.PARTIALLY_FILLED) or record.filled_qty > ZERO:
            order.status = S.SUBMITTED
        order.strategy = strategy
        # Under an id the journal knows, it may hold executions we have not seen.
        order.complete_executions = order.client_order_id not in self.known_ids
        self.orders.add(order)
        self.known_ids.add(order.client_order_id)
        self.journal.save_order(order)
        return order

    # ---- waiting ----------------------------------------------------------------------

    def notify(self) -> None:
        # Waking waiters is a plain flag flip: every waiter holds its own Event.
        for waiter in self._waiters:
            waiter.set()

    async def wait_for_change(self, seconds: float) -> bool:
        """Wait until a fill or order change is applied (True), or ``seconds`` pass (False)."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), seconds)
            return waiter.is_set()
        finally:
            self._waiters.discard(waiter)
