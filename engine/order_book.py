"""Every order the engine knows about, indexed for the questions the hot path asks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from engine.broker.port import BrokerOrder
from engine.domain import ZERO
from engine.orders import Order


def order_from_broker(record: BrokerOrder) -> Order:
    """An order we learned about from the broker (placed before a crash, or by hand)."""
    return Order(
        client_order_id=record.client_order_id,
        symbol=record.symbol,
        side=record.side,
        qty=record.qty,
        created_at=record.submitted_at,
        order_type=record.order_type,
        limit_price=record.limit_price,
        time_in_force=record.time_in_force,
        status=record.status,
        broker_order_id=record.broker_order_id,
        filled_qty=record.filled_qty,
        avg_fill_price=record.filled_avg_price,
        updated_at=record.updated_at,
        notional=record.notional,
    )


class OrderBook:
    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._by_broker_id: dict[str, str] = {}
        # client ids of orders that may still be open, per symbol: the hot path asks
        # "anything open in X?" on every bar, so it must not scan the whole history.
        self._maybe_open: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    def add(self, order: Order) -> None:
        self._orders[order.client_order_id] = order
        if order.is_open:
            self._maybe_open.setdefault(order.symbol, set()).add(order.client_order_id)
        if order.broker_order_id:
            self._by_broker_id[order.broker_order_id] = order.client_order_id

    def add_all(self, orders: Iterable[Order]) -> None:
        for order in orders:
            self.add(order)

    def link_broker_id(self, order: Order, broker_order_id: str) -> None:
        order.broker_order_id = broker_order_id
        self._by_broker_id[broker_order_id] = order.client_order_id

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def by_broker_id(self, broker_order_id: str) -> Order | None:
        cid = self._by_broker_id.get(broker_order_id)
        return self._orders.get(cid) if cid else None

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        symbols = [symbol] if symbol is not None else list(self._maybe_open)
        found = []
        for sym in symbols:
            ids = self._maybe_open.get(sym)
            if not ids:
                continue
            for cid in list(ids):
                order = self._orders.get(cid)
                if order is None or not order.is_open:
                    ids.discard(cid)  # closed since it was indexed
                else:
                    found.append(order)
            if not ids:
                # Keep only symbols with something maybe open: "every open order" (the
                # buying power, on each order) then costs the open orders, not the symbols.
                del self._maybe_open[sym]
        return sorted(found, key=lambda o: o.created_at)

    def has_open(self, symbol: str) -> bool:
        """Asked on every bar: an open order found ends it, no list, no sort."""
        ids = self._maybe_open.get(symbol)
        if not ids:
            return False
        orders = self._orders
        for cid in ids:
            order = orders.get(cid)
            if order is not None and order.is_open:
                return True
        return bool(self.open_orders(symbol))  # none open: drop them from the index

    def open_qty(self, symbol: str) -> Decimal:
        """Signed quantity still to be executed by this symbol's open orders."""
        return sum((o.remaining_qty * o.side.sign for o in self.open_orders(symbol)), start=ZERO)

    def created_since(self, since: datetime) -> list[Order]:
        return [o for o in self._orders.values() if o.created_at >= since]

    def prune(self, before: datetime) -> list[str]:
        """Forget closed orders created before ``before`` (they stay in the journal); their
        client ids."""
        stale = [cid for cid, o in self._orders.items() if not o.is_open and o.created_at < before]
        for cid in stale:
            order = self._orders.pop(cid)
            self._by_broker_id.pop(order.broker_order_id, None)
        return stale
