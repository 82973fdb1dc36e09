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
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from engine.broker.port import Broker, TradeUpdate
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
from engine.events import EngineError, FillReceived, RiskRejected, Severity
from engine.fill_checks import FILL_EVENTS, check_fill_update, fill_refusal
from engine.order_book import OrderBook
from engine.order_tracking import OrderTracker
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.recovery import Recovery
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

# How far back a recovery after a refused update looks (the update arrived just now).
RECOVERY_LOOKBACK = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    order: Order | None
    """The order as we now know it; None when the risk gate refused it."""
    rejected: RejectReason | None = None
    detail: str = ""


class ExecutionManager(OrderTracker):
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
        super().__init__(journal=journal, bus=bus, clock=clock, orders=orders)
        self.broker = broker
        self.portfolio = portfolio
        self.state = state
        self.gate = gate
        self.days = days
        self._market_open = market_open
        self._buying_power = buying_power
        self.duplicates_skipped = 0
        self.fills_applied = 0
        self.fills_held = 0
        """Fills applied while the journal could not write them (the journal holds them)."""
        self.in_flight: set[str] = set()
        """Client ids of submits awaiting the broker's answer."""
        self.recovery = Recovery(self)

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
        self.in_flight.add(order.client_order_id)
        try:
            record = await self.broker.submit_order(request)
        except DuplicateClientOrderId:
            existing = await self.broker.get_order_by_client_id(request.client_order_id)
            log.warning("broker already had %s; adopting it", request.client_order_id)
            if existing is not None:
                self.apply_broker_record(order, existing)
        except BrokerRejected as exc:
            self.set_status(order, S.REJECTED, str(exc))
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
            self.in_flight.discard(order.client_order_id)
        return SubmitResult(order)

    # ---- status and fills -------------------------------------------------------------

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
            self.on_unknown_order(update.order)
        await self.apply_fill(check.fill)

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
        return self.journal.holds_fill(fill.execution_id)

    async def apply_fill(self, fill: Fill, *, source: str = "broker") -> bool:
        """Apply one execution exactly once. Returns False for an execution already applied,
        or one no book can take (quarantined with a critical alert, see ``fill_checks``)."""
        if self._already_applied(fill):
            return False
        if (refusal := fill_refusal(fill)) is not None:
            await self.refuse_update(source, fill, refusal, recover_from=None)
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
        self.order_changed(order)
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

    async def recover(self, since: datetime) -> int:
        """Apply what the broker has since ``since`` (see ``Recovery.recover``)."""
        return await self.recovery.recover(since)

    def request_recovery(self, since: datetime) -> None:
        self.recovery.request(since)

    async def close(self) -> None:
        """Stop background work (a recovery in progress is cancelled)."""
        await self.recovery.close()

    def journal_counter_later(self, day: date, key: str, value: str) -> None:
        task = asyncio.get_running_loop().create_task(self.journal.set_counter(day, key, value))
        task.add_done_callback(_log_task_error)

    # ---- recovery ---------------------------------------------------------------------


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background journal write failed", exc_info=task.exception())
