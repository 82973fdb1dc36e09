"""Bring local state in line with the broker. The broker is the truth; every difference is
corrected, recorded and published."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from engine.broker.port import Broker
from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import CENT, ZERO, Account, OrderStatus, usd
from engine.errors import JournalWriteError
from engine.events import ReconcileDrift
from engine.execution import ExecutionManager
from engine.order_book import OrderBook
from engine.portfolio import Portfolio

log = logging.getLogger(__name__)

CASH_BASE = "cash_base"
"""Journal meta key: the cash the journaled fills do not explain (see ``_reconcile_cash``)."""
SETTLE_MARGIN = timedelta(seconds=10)
"""How far before a reconcile began its check for fills that arrived while the broker was
read looks (clock differences with the broker)."""


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    fills_recovered: int
    drifts: list[ReconcileDrift] = field(default_factory=list)
    positions: int = 0
    open_orders: int = 0
    account: Account | None = None
    skipped: str = ""
    """Why this reconcile did not run (empty when it ran)."""

    @property
    def clean(self) -> bool:
        return not self.drifts

    def summary(self) -> str:
        from engine.commands import count  # engine.commands imports the engine, and so this

        if self.skipped:
            return f"skipped: {self.skipped}"
        parts = [
            count(self.positions, "position"),
            count(self.open_orders, "open order"),
            f"{count(self.fills_recovered, 'missed fill')} recovered",
        ]
        parts.append("no drift" if self.clean else f"{len(self.drifts)} corrected")
        return ", ".join(parts)


class Reconciler:
    def __init__(
        self,
        *,
        broker: Broker,
        execution: ExecutionManager,
        portfolio: Portfolio,
        orders: OrderBook,
        bus: EventBus,
        clock: Clock,
    ) -> None:
        self._broker = broker
        self._execution = execution
        self._portfolio = portfolio
        self._orders = orders
        self._bus = bus
        self._clock = clock
        self._stored_base: Decimal | None = None

    async def run(self, since: datetime, *, at_startup: bool = False) -> ReconcileResult:
        """Recover missed fills since ``since``, then correct positions, cash and open orders.

        ``at_startup``: the book was just rebuilt from the journal's fills; the journal's cash
        base (see ``_reconcile_cash``) is added before cash is compared.
        """
        drifts: list[ReconcileDrift] = []
        known_before = {o.client_order_id for o in self._orders.created_since(since)}
        settle_since = self._clock.now() - SETTLE_MARGIN
        recovered = await self._execution.recover(since)
        resting = not at_startup and bool(self._orders.open_orders())
        applied_before = self._execution.fills_applied
        positions = {p.symbol: p for p in await self._broker.get_positions()}
        account = await self._broker.get_account()
        broker_open = await self._broker.get_open_orders()
        if resting and not await self._snapshot_settled(settle_since, applied_before):
            # A resting order filled while the broker was read: its fill is in the broker's
            # positions and cash but not (or not yet consistently) in the book. Correcting
            # now would count it twice once it is applied; the next reconcile compares.
            # (What came before this reconcile was recovered above.)
            recovered += await self._execution.recover(settle_since)
            log.info("reconcile: a fill arrived while the broker was read; not compared")
            return ReconcileResult(
                fills_recovered=recovered, skipped="a fill arrived while the broker was read"
            )
        for symbol in sorted(set(positions) | {p.symbol for p in self._portfolio.positions()}):
            broker_pos = positions.get(symbol)
            broker_qty = broker_pos.qty if broker_pos else ZERO
            local = self._portfolio.position(symbol)
            local_qty = local.qty if local else ZERO
            if broker_pos is not None and broker_pos.current_price is not None:
                self._portfolio.mark(symbol, broker_pos.current_price)
            if broker_qty == local_qty:
                continue
            avg = broker_pos.avg_entry_price if broker_pos else ZERO
            drifts.append(
                self._drift(
                    "position",
                    symbol,
                    local=f"{local_qty} @ {local.avg_price if local else ZERO}",
                    broker=f"{broker_qty} @ {avg}",
                )
            )
            self._portfolio.set_position(symbol, broker_qty, avg)

        drifts += await self._reconcile_cash(account, at_startup)

        open_ids = {r.client_order_id for r in broker_open}
        for record in broker_open:
            cid = record.client_order_id
            known = self._orders.get(cid)
            if known is None:
                self._execution.on_unknown_order(record)
            if known is None or (cid not in known_before and known.created_at >= since):
                drifts.append(
                    self._drift("order", record.client_order_id, "unknown", record.broker_status)
                )
        for order in self._orders.open_orders():
            if order.client_order_id in open_ids or order.status is OrderStatus.PENDING:
                continue
            found = await self._broker.get_order_by_client_id(order.client_order_id)
            before = order.status.value
            if found is not None:
                self._execution.apply_broker_record(order, found, authoritative=True)
            if order.is_open:
                status = found.broker_status if found else "unknown"
                self._execution.force_close(order, f"not open at the broker ({status})")
            drifts.append(self._drift("order", order.client_order_id, before, order.status.value))

        for drift in drifts:
            log.warning(
                "reconcile: %s %s local=%s broker=%s",
                drift.kind,
                drift.key,
                drift.local,
                drift.broker,
            )
            self._bus.publish(drift)
        return ReconcileResult(
            fills_recovered=recovered,
            drifts=drifts,
            positions=len(positions),
            open_orders=len(broker_open),
            account=account,
        )

    async def _snapshot_settled(self, settle_since: datetime, applied_before: int) -> bool:
        """With orders resting at the broker, one may fill while positions, cash and open
        orders are read: the snapshot is compared with the book only when no fill was
        applied meanwhile and the broker has no execution the book lacks. Only the fills
        since this reconcile began are asked for (the ones before it were recovered), with a
        margin for the broker's clock: one page, not the whole lookback again."""
        broker_fills = await self._broker.get_fills_since(settle_since)
        return self._execution.fills_applied == applied_before and self._execution.settled(
            broker_fills
        )

    async def _reconcile_cash(self, account: Account, at_startup: bool) -> list[ReconcileDrift]:
        """A cash difference of a cent or more is drift; the broker's cash is adopted.

        Our journal holds fills, not deposits: its ``cash_base`` is the cash those fills do not
        explain (deposits, withdrawals, corrections adopted from the broker), so a restart
        rebuilds the cash we expect and compares it too. Only a first start, with no base
        yet, adopts the broker's cash without a word.
        """
        journal = self._execution.journal  # the journal whose fills the cash is built from
        portfolio = self._portfolio
        first_start = False
        if at_startup:
            stored = await journal.get_meta(CASH_BASE)
            first_start = stored is None
            self._stored_base = None if stored is None else Decimal(stored)
            if self._stored_base is not None:
                portfolio.set_cash_base(self._stored_base)
        local = portfolio.cash
        drifts: list[ReconcileDrift] = []
        if abs(account.cash - local) >= CENT and not first_start:
            drifts.append(self._drift("cash", "cash", usd(local), usd(account.cash)))
        portfolio.set_cash(account.cash)
        if portfolio.cash_base != self._stored_base:
            try:
                await journal.set_meta(CASH_BASE, str(portfolio.cash_base))
                self._stored_base = portfolio.cash_base
            except JournalWriteError as exc:  # written by the next reconcile instead
                log.warning("cash base not journaled: %s", exc)
        return drifts

    def _drift(self, kind: str, key: str, local: str, broker: str) -> ReconcileDrift:
        return ReconcileDrift(ts=self._clock.now(), kind=kind, key=key, local=local, broker=broker)
