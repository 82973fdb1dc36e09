"""The simulator's records and their state file: every order (latest version), the open ones
oldest first, every execution, and what changed since the last save. ``engine.sim.exchange``
decides what happens to orders; this keeps them and saves them with the account."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from uuid import uuid4

from engine.domain import ZERO, Side, parse_utc
from engine.sim.account import SimAccount
from engine.sim.models import (
    FILLED,
    PARTIALLY_FILLED,
    ExecutionRecord,
    OrderRecord,
    record_from_json,
    record_to_json,
)
from engine.sim.store import SimStateStore


class OrderLedger:
    def __init__(self, store: SimStateStore | None) -> None:
        self._store = store
        self.orders: dict[str, OrderRecord] = {}
        self.by_client_id: dict[str, str] = {}
        self._open: dict[str, None] = {}  # open order ids, oldest first
        self._open_by_symbol: dict[str, dict[str, None]] = {}
        self.executions: list[ExecutionRecord] = []
        self._changed: dict[str, None] = {}
        self._saved_executions = 0

    def put(self, order: OrderRecord) -> None:
        """Store a new version of ``order`` (it is saved with the next commit)."""
        self.orders[order.id] = order
        self.by_client_id[order.client_order_id] = order.id
        self._index(order)
        self._changed[order.id] = None

    def execute(
        self,
        order: OrderRecord,
        qty: Decimal,
        price: Decimal,
        commission: Decimal,
        now: datetime,
    ) -> tuple[OrderRecord, ExecutionRecord]:
        """Record one execution of ``order``: its new version and the execution record."""
        filled = order.filled_qty + qty
        done = filled == order.qty
        previous_cost = (order.filled_avg_price or ZERO) * order.filled_qty
        updated = replace(
            order,
            filled_qty=filled,
            filled_avg_price=(previous_cost + price * qty) / filled,
            status=FILLED if done else PARTIALLY_FILLED,
            updated_at=now,
            filled_at=now if done else None,
            commission=order.commission + commission,
        )
        self.put(updated)
        execution = ExecutionRecord(
            id=str(uuid4()),
            order_id=order.id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            cum_qty=filled,
            leaves_qty=order.qty - filled,
            order_status=updated.status,
            transaction_time=now,
            commission=commission,
        )
        self.executions.append(execution)
        return updated, execution

    def open_orders(self) -> Iterator[OrderRecord]:
        """The open orders, oldest first. Take a ``list`` of it before changing orders."""
        return (self.orders[oid] for oid in self._open)

    def open_for(self, symbol: str) -> Iterator[OrderRecord]:
        """The symbol's open orders, oldest first. Take a ``list`` of it before changing them."""
        return (self.orders[oid] for oid in self._open_by_symbol.get(symbol, ()))

    def has_open(self, symbol: str) -> bool:
        return symbol in self._open_by_symbol

    def open_qty(self, symbol: str, side: Side) -> Decimal:
        """What the symbol's open orders on ``side`` still have to fill."""
        return sum((o.remaining_qty for o in self.open_for(symbol) if o.side is side), ZERO)

    def by_client(self, client_order_id: str) -> OrderRecord | None:
        oid = self.by_client_id.get(client_order_id)
        return None if oid is None else self.orders[oid]

    def save(self, account: SimAccount, last_ts: datetime) -> None:
        """Append what changed since the last save (or write the whole state when the file
        is new or due for compaction). Nothing is marked saved unless the write succeeded."""
        store = self._store
        if store is None:
            return
        stamp = {"last_ts": last_ts.isoformat()}
        if store.needs_compaction:
            store.compact(
                account.to_json() | stamp,
                [record_to_json(o) for o in self.orders.values()],
                [record_to_json(e) for e in self.executions],
            )
        else:
            store.append(
                account.delta_json() | stamp,
                [record_to_json(self.orders[oid]) for oid in self._changed],
                [record_to_json(e) for e in self.executions[self._saved_executions :]],
            )
        account.saved()
        self._changed.clear()
        self._saved_executions = len(self.executions)

    def release(self) -> None:
        """Close the state file until the next save (a clean stop)."""
        if self._store is not None:
            self._store.release()

    def load(self, account: SimAccount) -> datetime | None:
        """Restore the records and ``account`` from the state file; returns the market time
        of the last save, None when there is no state yet. Raises ValueError when it is
        unreadable."""
        store = self._store
        if store is None:
            return None
        try:
            stored = store.load()
            if stored is None:
                return None
            account.load_json(stored.account)
            for raw in stored.orders.values():
                order = record_from_json(OrderRecord, raw)
                self.orders[order.id] = order
                self.by_client_id[order.client_order_id] = order.id
                self._index(order)
            self.executions = [
                record_from_json(ExecutionRecord, e) for e in stored.executions.values()
            ]
            self._saved_executions = len(self.executions)
            return parse_utc(stored.account["last_ts"])
        except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise ValueError(f"simulator state {store.path} is unreadable: {exc}") from exc

    def _index(self, order: OrderRecord) -> None:
        if order.is_open:
            self._open[order.id] = None
            self._open_by_symbol.setdefault(order.symbol, {})[order.id] = None
            return
        self._open.pop(order.id, None)
        same_symbol = self._open_by_symbol.get(order.symbol)
        if same_symbol is not None:
            same_symbol.pop(order.id, None)
            if not same_symbol:
                del self._open_by_symbol[order.symbol]
