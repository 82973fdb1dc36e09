"""The fill path: trade updates in, each execution checked, journaled and applied exactly once.

Every update is checked before anything of it is committed (``engine.fill_checks``); one that
fails is quarantined, said loudly, and the broker's REST view asked for the truth. A fill is
applied exactly once whichever way it arrives (the live stream, recovery after a gap or a
refused update, start-up reconciliation): the execution ids on our orders, the fills in
flight and the journal de-duplicate it.

A fill is acknowledged (``FillReceived``, the order's update) only once the journal holds it.
The strategy that placed the order is told earlier, as the fill is applied to the book
(``on_applied``): what a strategy decides next then never depends on how fast the journal
commits, so a replay trades the same whatever the disk.
Stream fills of an order whose every journaled execution we know are applied to the book at
once and committed in the background, so a burst (a flatten's closes) shares a few group
commits instead of waiting for one commit each; ``drain()`` waits for their
acknowledgements. Any other fill is committed first (the journal's unique execution id then
decides) and applied after.

A fill the journal cannot write (disk full, read-only, I/O error) is still applied: the book
must match the broker. The journal holds it and writes it as soon as writes work again. If the
process dies first, start-up recovery asks the broker for executions since the last journaled
fill, which brings it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from engine.broker.port import Broker, TradeUpdate
from engine.bus import EventBus
from engine.clock import Clock, trading_day
from engine.daily import DayTracker
from engine.domain import ZERO, Fill, OrderStatus
from engine.errors import DomainError, JournalWriteError
from engine.events import EngineError, Event, FillReceived, Severity
from engine.fill_checks import FILL_EVENTS, check_fill_update, fill_refusal
from engine.order_book import OrderBook
from engine.order_tracking import OrderTracker
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.recovery import Recovery
from engine.risk import RiskGate
from engine.store.journal import Journal

log = logging.getLogger(__name__)
S = OrderStatus

# How far back a recovery after a refused update looks (the update arrived just now).
RECOVERY_LOOKBACK = timedelta(minutes=15)


class FillPath(OrderTracker):
    def __init__(
        self,
        *,
        broker: Broker,
        journal: Journal,
        bus: EventBus,
        clock: Clock,
        orders: OrderBook,
        portfolio: Portfolio,
        gate: RiskGate,
        days: DayTracker,
    ) -> None:
        super().__init__(journal=journal, bus=bus, clock=clock, orders=orders)
        self.broker = broker
        self.portfolio = portfolio
        self.gate = gate
        self.days = days
        self.fills_applied = 0
        self.fills_held = 0
        """Fills applied while the journal could not write them (the journal holds them)."""
        self.recovery = Recovery(self)
        self.on_applied: Callable[[Fill], None] | None = None
        """Told of each fill as it is applied to the book, before its commit is acknowledged
        (the strategies' ``on_fill``: ``BarPath.on_fill``); it must not raise."""
        self._committing: set[str] = set()
        """Execution ids whose journal commit is in flight (applied or about to be)."""
        self._unacked = 0
        self._acked = asyncio.Event()
        self._acked.set()

    # ---- trade updates ----------------------------------------------------------------

    async def on_trade_update(self, update: TradeUpdate) -> None:
        known = self.known_order(update.order)
        if update.event in FILL_EVENTS:
            await self._on_fill_update(update, known)
            return
        self.apply_status_event(known or self.on_unknown_order(update.order), update.event)

    async def _on_fill_update(self, update: TradeUpdate, order: Order | None) -> None:
        check = check_fill_update(
            update,
            order,
            adopt_unknown=self._expected_from is not None,
            symbol_known=self._symbol_known,
        )
        if check.fill is not None and self._already_applied(check.fill):
            return
        if check.refusal is not None:
            since = self.clock.now() - RECOVERY_LOOKBACK
            if order is not None:
                since = min(since, order.created_at)
            await self.refuse_update("trade_update", update, check.refusal, recover_from=since)
            return
        assert check.fill is not None
        if order is None:
            order = self.on_unknown_order(update.order)
        if order.complete_executions:
            self._apply_ahead(check.fill)
            # Nothing above waited: let the commit start and others run between fills.
            await asyncio.sleep(0)
        else:
            await self.apply_fill(check.fill)
        if update.order.notional is not None and update.order.status is S.FILLED:
            # A notional order has no share count to reach: the broker says when it is done.
            self.set_status(order, S.FILLED)

    async def on_malformed_update(self, payload: object, reason: str) -> None:
        """An update from the broker that could not even be parsed (``payload`` as received:
        text, bytes or a mapping): quarantined, a critical alert, and a REST recovery."""
        since = self.clock.now() - RECOVERY_LOOKBACK
        await self.refuse_update(
            "trade_update", payload, f"malformed: {reason}", recover_from=since
        )

    async def refuse_update(
        self, source: str, payload: object, reason: str, *, recover_from: datetime | None
    ) -> None:
        """Keep an update that must not be applied in the journal's quarantine (not applied,
        not lost), say so loudly, and (``recover_from``) ask the broker for the truth."""
        log.error("refused an update from %s: %s: %r", source, reason, payload)
        await self.journal.quarantine(source, payload, reason, self.clock.now())
        then = "; asking the broker for the truth" if recover_from is not None else ""
        self.bus.publish(
            EngineError(
                ts=self.clock.now(),
                component="trade_updates",
                message=f"update refused and quarantined ({source}): {reason}{then}",
                severity=Severity.CRITICAL,
            )
        )
        if recover_from is not None:
            self.request_recovery(recover_from)

    def _symbol_known(self, symbol: str) -> bool:
        return (
            self.gate.allows_symbol(symbol)
            or self.portfolio.qty(symbol) != ZERO
            or self.orders.has_open(symbol)
        )

    def _already_applied(self, fill: Fill) -> bool:
        order = self.orders.get(fill.client_order_id)
        if order is not None and fill.execution_id in order.execution_ids:
            return True
        return fill.execution_id in self._committing or self.journal.holds_fill(fill.execution_id)

    def settled(self, broker_fills: Sequence[Fill]) -> bool:
        """True when the book has applied every one of ``broker_fills`` (the broker's
        executions) and no fill is between the stream and the book: only then can a snapshot
        of the broker be compared with the book without taking a fill in flight for drift."""
        return not self._committing and all(self._already_applied(f) for f in broker_fills)

    # ---- applying fills ---------------------------------------------------------------

    async def apply_fill(self, fill: Fill, *, source: str = "broker") -> bool:
        """Apply one execution exactly once. Returns False for an execution already applied,
        or one no book can take (quarantined with a critical alert, see ``fill_checks``)."""
        return await self.apply_fills([fill], source=source) == 1

    async def apply_fills(self, fills: Sequence[Fill], *, source: str = "broker") -> int:
        """Apply executions in order, each exactly once, journaled in one group commit before
        any is applied. Returns how many were applied."""
        admitted: list[Fill] = []
        for fill in fills:
            if self._already_applied(fill):  # (a copy earlier in ``fills`` included)
                continue
            if (refusal := fill_refusal(fill)) is not None:
                await self.refuse_update(source, fill, refusal, recover_from=None)
                continue
            self._committing.add(fill.execution_id)
            admitted.append(fill)
        try:
            new = await asyncio.gather(*(self._record(fill) for fill in admitted))
        finally:
            self._committing.difference_update(f.execution_id for f in admitted)
        applied = 0
        for fill, is_new in zip(admitted, new, strict=True):
            if is_new:
                order, events = self._book(fill)
                self._acknowledge(order, events)
                applied += 1
        return applied

    def _apply_ahead(self, fill: Fill) -> None:
        """Apply now, commit in the background, acknowledge once committed."""
        self._committing.add(fill.execution_id)
        self._unacked += 1
        self._acked.clear()
        order, events = self._book(fill)
        future = self.journal.commit_fill(fill)
        future.add_done_callback(lambda done: self._committed(fill, order, events, done))

    def _committed(
        self, fill: Fill, order: Order, events: list[Event], done: asyncio.Future[bool]
    ) -> None:
        self._committing.discard(fill.execution_id)
        try:
            if not done.result():
                # Only an order we know every execution of takes this path: a bug if reached.
                self._error(f"fill {fill.execution_id} was already journaled: counted twice")
        except (JournalWriteError, asyncio.CancelledError) as exc:
            self._hold(fill, exc)
        except Exception as exc:
            log.exception("journaling fill %s failed", fill.execution_id)
            self._hold(fill, exc)
        finally:
            self._acknowledge(order, events)
            self._unacked -= 1
            if self._unacked == 0:
                self._acked.set()

    @property
    def unacknowledged(self) -> int:
        """Fills applied ahead of their commit and not yet acknowledged."""
        return self._unacked

    async def drain(self) -> None:
        """Wait until every fill applied ahead of its commit is journaled and acknowledged."""
        await self._acked.wait()

    async def _record(self, fill: Fill) -> bool:
        """Journal the fill; False if the journal already has (or holds) it."""
        try:
            return await self.journal.record_fill(fill)
        except JournalWriteError as exc:
            return self._hold(fill, exc)

    def _hold(self, fill: Fill, exc: BaseException) -> bool:
        try:
            if not self.journal.hold_fill(fill):
                return False
        except RuntimeError:  # the journal closed meanwhile: start-up recovery brings it back
            log.error("fill %s applied but never journaled (journal closed)", fill.execution_id)
            return True
        self.fills_held += 1
        log.error("fill %s applied but not on disk yet: %s", fill.execution_id, exc)
        return True

    def _book(self, fill: Fill) -> tuple[Order, list[Event]]:
        """Apply ``fill`` to its order and the portfolio now; the events that say so."""
        order = self.orders.get(fill.client_order_id)
        if order is None:
            order = Order(
                client_order_id=fill.client_order_id,
                symbol=fill.symbol,
                side=fill.side,
                qty=fill.qty,
                created_at=fill.ts,
                status=S.SUBMITTED,
                broker_order_id=fill.broker_order_id,
                complete_executions=fill.client_order_id not in self.known_ids,
            )
            self.orders.add(order)
            self.known_ids.add(order.client_order_id)
        self._note_day_trade(fill)
        try:
            if order.status is S.FILLED:
                # Reconciliation already closed it from the broker's totals.
                order.execution_ids.add(fill.execution_id)
            else:
                order.apply_fill(fill)
        except DomainError as exc:
            # The execution is real money: the portfolio takes it even if our order record
            # disagrees; the disagreement is surfaced.
            order.execution_ids.add(fill.execution_id)
            self._error(str(exc), Severity.WARNING)
        realized = self.portfolio.apply_fill(fill)
        self.fills_applied += 1
        if self.on_applied is not None:
            self.on_applied(fill)
        position = self.portfolio.qty(fill.symbol)
        received = FillReceived(ts=fill.ts, fill=fill, position_qty=position, realized_pnl=realized)
        return order, [received, self.order_event(order)]

    def _acknowledge(self, order: Order, events: list[Event]) -> None:
        if not self.journal.closed:  # (closed: shutting down; the fills table is the truth)
            self.journal.save_order(order)
        for event in events:
            self.bus.publish(event)
        self.notify()

    def _error(self, message: str, severity: Severity = Severity.CRITICAL) -> None:
        self.bus.publish(
            EngineError(ts=self.clock.now(), component="orders", message=message, severity=severity)
        )

    def _note_day_trade(self, fill: Fill) -> None:
        opened_at = self.portfolio.opened_at(fill.symbol)
        if opened_at is None:
            return
        closes = (self.portfolio.qty(fill.symbol) > ZERO) != (fill.side.sign > 0)
        day = trading_day(fill.ts)
        if closes and trading_day(opened_at) == day:
            count = self.days.record_day_trade(day, fill.client_order_id)
            self.journal.set_counter_later(day, "day_trades", str(count))

    # ---- recovery ---------------------------------------------------------------------

    async def recover(self, since: datetime) -> int:
        """Apply what the broker has since ``since`` (see ``Recovery.recover``)."""
        return await self.recovery.recover(since)

    def request_recovery(self, since: datetime) -> None:
        self.recovery.request(since)

    async def close(self) -> None:
        """Stop background work (a recovery in progress is cancelled) and wait for the fills
        in flight to be journaled."""
        await self.recovery.close()
        await self.drain()
