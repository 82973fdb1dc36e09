"""Learning the truth from the broker's REST view: after a stream gap, after an update we
refused, and at start-up (through reconciliation).

Fills come back through ``FillPath.apply_fills`` (already-applied executions are skipped; the
rest journaled in one group commit), then order states are brought in line with the
broker's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from engine.broker.port import BrokerOrder
from engine.domain import OrderStatus
from engine.errors import BrokerError
from engine.events import EngineError
from engine.orders import Order

if TYPE_CHECKING:
    from engine.fill_path import FillPath

log = logging.getLogger(__name__)
S = OrderStatus


class Recovery:
    def __init__(self, execution: FillPath) -> None:
        self._ex = execution
        self._task: asyncio.Task[None] | None = None
        self._since: datetime | None = None

    async def recover(self, since: datetime) -> int:
        """After a gap: apply every execution the broker has since ``since`` (already-applied
        ones are skipped) and bring order states up to date. Returns fills applied."""
        ex = self._ex
        fills = sorted(await ex.broker.get_fills_since(since), key=lambda f: f.ts)
        records = await ex.broker.get_orders_since(since)
        by_cid = {r.client_order_id: r for r in records}
        # Adopt unknown orders before their executions, so each is sized by the broker and
        # not by its first execution.
        adopted: list[tuple[Order, BrokerOrder]] = []
        for cid in dict.fromkeys(f.client_order_id for f in fills):
            if cid not in ex.orders:
                found = by_cid.get(cid) or await ex.broker.get_order_by_client_id(cid)
                if found is not None:
                    adopted.append((ex.adopt(found), found))
        applied = await ex.apply_fills(fills, source="broker_rest")
        for adoptee, found in adopted:
            if found.client_order_id not in by_cid:
                ex.apply_broker_record(adoptee, found, authoritative=True)
        for record in records:
            ex.known_ids.add(record.client_order_id)
            order = ex.orders.get(record.client_order_id)
            if order is None and record.status.is_open:
                order = ex.order_for(record)
            if order is not None:
                ex.apply_broker_record(order, record, authoritative=True)
        for order in ex.orders.open_orders():
            cid = order.client_order_id
            if order.status is S.PENDING and cid not in by_cid and cid not in ex.in_flight:
                # (a submit still waiting for its answer is not "lost": skip it)
                found = await ex.broker.get_order_by_client_id(order.client_order_id)
                if found is None:
                    ex.set_status(order, S.REJECTED, "never reached the broker")
                else:
                    ex.apply_broker_record(order, found, authoritative=True)
        return applied

    def request(self, since: datetime) -> None:
        """Run ``recover`` in the background soon; requests made while one runs are folded
        into one more run from the earliest ``since``."""
        if self._since is None or since < self._since:
            self._since = since
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fill-recovery")

    async def _run(self) -> None:
        while (since := self._since) is not None:
            self._since = None
            try:
                applied = await self.recover(since)
            except BrokerError as exc:
                self._ex.bus.publish(
                    EngineError(
                        ts=self._ex.clock.now(),
                        component="broker",
                        message=f"recovery after a refused update failed: {exc}",
                    )
                )
            except Exception:
                log.exception("recovery after a refused update failed")
            else:
                log.info("recovered from the broker after a refused update: %d fills", applied)

    async def close(self) -> None:
        """Stop background work (a recovery in progress is cancelled)."""
        task, self._task = self._task, None
        self._since = None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
