"""Order submission and the fill path.

Submission: risk gate -> order recorded (write-behind) -> broker. Fills: journal commit (which
also de-duplicates by execution id) -> order state machine -> portfolio -> bus. A fill is
applied to the portfolio exactly once whichever way it arrives: the live stream, recovery
after a stream gap, or start-up reconciliation.

A fill the journal cannot write (disk full, read-only, I/O error) is still applied: the book
must match the broker. The journal holds it and writes it as soon as writes work again; the
execution ids on our orders and the journal's held fills de-duplicate it meanwhile. If the
process dies first, start-up recovery asks the broker for executions since the last journaled
fill, which brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.broker.port import Broker, BrokerOrder, TradeUpdate
from engine.bus import EventBus
from engine.clock import Clock, trading_day
from engine.daily import DayTracker
from engine.domain import ZERO, Fill, OrderRequest, OrderStatus
from engine.errors import (
    BrokerRejected,
    BrokerUnavailable,
    DomainError,
    DuplicateClientOrderId,
    JournalWriteError,
)
from engine.events import EngineError, FillReceived, OrderUpdated, RiskRejected, Severity
from engine.order_book import OrderBook, order_from_broker
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.risk import (
    RejectReason,
    RiskContext,
    RiskDecision,
    RiskGate,
    TradingStateController,
)
from engine.store.journal import Journal

log = logging.getLogger(__name__)
S = OrderStatus

# Venue words that are not fills, mapped onto our states. Anything else (done_for_day,
# replaced, calculated...) carries no state change for us.
_EVENT_STATUS: dict[str, OrderStatus] = {
    "new": S.SUBMITTED,
    "accepted": S.SUBMITTED,
    "pending_new": S.SUBMITTED,
    "order_cancel_rejected": S.SUBMITTED,
    "pending_cancel": S.CANCEL_PENDING,
    "canceled": S.CANCELLED,
    "expired": S.EXPIRED,
    "rejected": S.REJECTED,
}


@dataclass(frozen=True, slots=True)
class SubmitResult:
    order: Order | None
    """The order as we now know it; None when the risk gate refused it."""
    rejected: RejectReason | None = None
    detail: str = ""


class ExecutionManager:
    def __init__(
        self,
        *,
        broker: Broker,
        journal: Journal,
        bus: EventBus,
        clock: Clock,
        portfolio: Portfolio,
        orders: OrderBook,
        state: TradingStateController,
        gate: RiskGate,
        days: DayTracker,
        market_open: Callable[[datetime], bool],
        buying_power: Callable[[], Decimal],
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.bus = bus
        self.clock = clock
        self.portfolio = portfolio
        self.orders = orders
        self.state = state
        self.gate = gate
        self.days = days
        self._market_open = market_open
        self._buying_power = buying_power
        self.known_ids: set[str] = set()
        self.duplicates_skipped = 0
        self.fills_applied = 0
        self.fills_held = 0
        """Fills applied while the journal could not write them (the journal holds them)."""
        self._waiters: set[asyncio.Event] = set()
        self._in_flight: set[str] = set()
        self._expected_from: str | None = None
        """Client ids of submits awaiting the broker's answer."""

    # ---- submission -------------------------------------------------------------------

    def risk_context(self, symbol: str) -> RiskContext:
        now = self.clock.now()
        position = self.portfolio.position(symbol)
        opened_today = bool(
            position is not None
            and position.opened_at is not None
            and trading_day(position.opened_at) == trading_day(now)
        )
        return RiskContext(
            state=self.state.state,
            market_open=self._market_open(now),
            position_qty=self.portfolio.qty(symbol),
            open_order_qty=self.orders.open_qty(symbol),
            last_price=self.portfolio.last_price(symbol),
            gross_exposure=self.portfolio.gross_exposure,
            buying_power=self._buying_power(),
            equity=self.portfolio.equity,
            day_pnl=self.portfolio.day_pnl,
            orders_today=self.days.orders_today,
            day_trades_5d=self.days.day_trades_5d(),
            position_opened_today=opened_today,
            known_client_order_ids=self.known_ids,
        )

    async def submit(self, request: OrderRequest, *, checked: bool = True) -> SubmitResult:
        """Send an order. ``checked=False`` skips the risk gate: only the kill switch's own
        closing orders use it, so a halt can never stop us getting flat."""
        decision = (
            self.gate.check(request, self.risk_context(request.symbol))
            if checked
            else RiskDecision.approve()
        )
        if not decision.approved:
            assert decision.reason is not None
            if decision.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID:
                # Expected after a restart replays a signal we already acted on.
                self.duplicates_skipped += 1
                log.info("skipping known order %s", request.client_order_id)
            else:
                self.bus.publish(
                    RiskRejected(
                        ts=self.clock.now(),
                        client_order_id=request.client_order_id,
                        symbol=request.symbol,
                        side=request.side,
                        qty=request.qty,
                        reason=decision.reason.value,
                        detail=decision.detail,
                    )
                )
            return SubmitResult(None, decision.reason, decision.detail)

        tracked = self.orders.get(request.client_order_id)
        if tracked is not None:
            # Only unchecked orders get here (the gate refuses known ids): never replace an
            # order we track.
            self.duplicates_skipped += 1
            return SubmitResult(
                tracked, RejectReason.DUPLICATE_CLIENT_ORDER_ID, "client order id already used"
            )
        order = Order.from_request(request, self.clock.now())
        self.orders.add(order)
        self.known_ids.add(order.client_order_id)
        if checked:
            self.days.orders_today += 1  # the kill switch's own orders do not use the quota
        self.journal.save_order(order)
        self._in_flight.add(order.client_order_id)
        try:
            record = await self.broker.submit_order(request)
        except DuplicateClientOrderId:
            existing = await self.broker.get_order_by_client_id(request.client_order_id)
            log.warning("broker already had %s; adopting it", request.client_order_id)
            if existing is not None:
                self.apply_broker_record(order, existing)
        except BrokerRejected as exc:
            self._set_status(order, S.REJECTED, str(exc))
        except BrokerUnavailable as exc:
            # It may or may not have reached the broker: the order stays PENDING and the
            # next recovery asks the broker by client_order_id.
            self.bus.publish(
                EngineError(
                    ts=self.clock.now(),
                    component="broker",
                    message=f"submit {order.client_order_id} unconfirmed: {exc}",
                    severity=Severity.WARNING,
                )
            )
        else:
            self.apply_broker_record(order, record)
        finally:
            self._in_flight.discard(order.client_order_id)
        return SubmitResult(order)

    # ---- status and fills -------------------------------------------------------------

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
            self._order_changed(order)
            return
        if target in (S.FILLED, S.PARTIALLY_FILLED):
            target = S.SUBMITTED
        reason = record.broker_status if target.is_terminal else ""
        self._set_status(order, target, reason)

    def _set_status(self, order: Order, target: OrderStatus, reason: str = "") -> None:
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
        self._order_changed(order)

    def _order_changed(self, order: Order) -> None:
        self.journal.save_order(order)
        self.bus.publish(
            OrderUpdated(
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
        )
        self._notify()

    async def on_trade_update(self, update: TradeUpdate) -> None:
        order = self._order_for(update.order)
        fill = update.to_fill()
        if fill is not None:
            await self.apply_fill(fill)
            return
        status = _EVENT_STATUS.get(update.event)
        if status is None:
            return
        reason = update.event if status.is_terminal else ""
        if order.status is S.CANCEL_PENDING and status is S.SUBMITTED:
            if update.event != "order_cancel_rejected":
                return  # a late "new"/"accepted" says nothing about the pending cancel
            # A refused cancel puts the order back where its executions say it is.
            status = S.PARTIALLY_FILLED if order.filled_qty > ZERO else S.SUBMITTED
        self._set_status(order, status, reason)

    def track_broker_order(self, record: BrokerOrder, *, strategy: str) -> Order:
        """Register an order the broker created for us (close-all), before its updates."""
        return self.orders.get(record.client_order_id) or self._adopt(record, strategy)

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
        order = self._adopt(record, strategy)
        self.apply_broker_record(order, record)
        return order

    def force_close(self, order: Order, reason: str) -> None:
        """The broker no longer has this order open and cannot say more: stop tracking it."""
        self._set_status(order, S.CANCELLED, reason)

    def _order_for(self, record: BrokerOrder) -> Order:
        order = self.orders.get(record.client_order_id) or self.orders.by_broker_id(
            record.broker_order_id
        )
        return order if order is not None else self.on_unknown_order(record)

    def _adopt(self, record: BrokerOrder, strategy: str = "") -> Order:
        order = order_from_broker(record)
        # Executions are applied as fills, so the adopted order starts with none.
        order.filled_qty, order.avg_fill_price = ZERO, None
        if order.status in (S.FILLED, S.PARTIALLY_FILLED) or record.filled_qty > ZERO:
            order.status = S.SUBMITTED
        order.strategy = strategy
        self.orders.add(order)
        self.known_ids.add(order.client_order_id)
        self.journal.save_order(order)
        return order

    async def apply_fill(self, fill: Fill) -> bool:
        """Apply one execution exactly once. Returns False for an execution already applied."""
        order = self.orders.get(fill.client_order_id)
        if order is not None and fill.execution_id in order.execution_ids:
            return False
        if not await self._record(fill):
            return False
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
            self.bus.publish(
                EngineError(
                    ts=self.clock.now(),
                    component="orders",
                    message=str(exc),
                    severity=Severity.WARNING,
                )
            )
        realized = self.portfolio.apply_fill(fill)
        self.fills_applied += 1
        self.bus.publish(
            FillReceived(
                ts=fill.ts,
                fill=fill,
                position_qty=self.portfolio.qty(fill.symbol),
                realized_pnl=realized,
            )
        )
        self._order_changed(order)
        return True

    async def _record(self, fill: Fill) -> bool:
        """Journal the fill; False if the journal already has (or holds) it."""
        try:
            return await self.journal.record_fill(fill)
        except JournalWriteError as exc:
            if not self.journal.hold_fill(fill):
                return False
            self.fills_held += 1
            log.error("fill %s applied but not on disk yet: %s", fill.execution_id, exc)
            return True

    def _note_day_trade(self, fill: Fill) -> None:
        position = self.portfolio.position(fill.symbol)
        if position is None or position.qty == ZERO or position.opened_at is None:
            return
        closes = (position.qty > ZERO) != (fill.side.sign > 0)
        day = trading_day(fill.ts)
        if closes and trading_day(position.opened_at) == day:
            count = self.days.record_day_trade(day, fill.client_order_id)
            self.journal_counter_later(day, "day_trades", str(count))

    def journal_counter_later(self, day: object, key: str, value: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self.journal.set_counter(day, key, value)  # type: ignore[arg-type]
        )
        task.add_done_callback(_log_task_error)

    # ---- recovery ---------------------------------------------------------------------

    async def recover(self, since: datetime) -> int:
        """After a gap: apply every execution the broker has since ``since`` (already-applied
        ones are skipped) and bring order states up to date. Returns fills applied."""
        fills = sorted(await self.broker.get_fills_since(since), key=lambda f: f.ts)
        records = await self.broker.get_orders_since(since)
        by_cid = {r.client_order_id: r for r in records}
        # Adopt unknown orders before their executions, so each is sized by the broker and
        # not by its first execution.
        adopted: list[tuple[Order, BrokerOrder]] = []
        for cid in dict.fromkeys(f.client_order_id for f in fills):
            if cid not in self.orders:
                found = by_cid.get(cid) or await self.broker.get_order_by_client_id(cid)
                if found is not None:
                    adopted.append((self._adopt(found), found))
        applied = 0
        for fill in fills:
            if await self.apply_fill(fill):
                applied += 1
        for adoptee, found in adopted:
            if found.client_order_id not in by_cid:
                self.apply_broker_record(adoptee, found, authoritative=True)
        for record in records:
            self.known_ids.add(record.client_order_id)
            order = self.orders.get(record.client_order_id)
            if order is None and record.status.is_open:
                order = self._order_for(record)
            if order is not None:
                self.apply_broker_record(order, record, authoritative=True)
        for order in self.orders.open_orders():
            cid = order.client_order_id
            if order.status is S.PENDING and cid not in by_cid and cid not in self._in_flight:
                # (a submit still waiting for its answer is not "lost": skip it)
                found = await self.broker.get_order_by_client_id(order.client_order_id)
                if found is None:
                    self._set_status(order, S.REJECTED, "never reached the broker")
                else:
                    self.apply_broker_record(order, found, authoritative=True)
        return applied

    # ---- waiting ----------------------------------------------------------------------

    def _notify(self) -> None:
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


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background journal write failed", exc_info=task.exception())
