"""Order submission: risk gate -> order recorded (write-behind) -> broker.

``ExecutionManager`` is the engine's one door for orders and fills: it builds on the fill path
(``engine.fill_path``: trade updates, fills exactly once, recovery) and on what we know about
orders (``engine.order_tracking``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from engine.broker.port import Broker
from engine.bus import EventBus
from engine.clock import Clock
from engine.daily import DayTracker
from engine.domain import OrderRequest, OrderStatus, TradingState
from engine.errors import (
    BrokerRejected,
    BrokerUnavailable,
    DuplicateClientOrderId,
)
from engine.events import EngineError, RiskRejected, Severity
from engine.fill_path import FillPath
from engine.order_book import OrderBook
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.risk import (
    RejectReason,
    RiskContext,
    RiskDecision,
    RiskGate,
    TradingStateController,
)
from engine.risk.context import build_risk_context
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


class ExecutionManager(FillPath):
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
        super().__init__(
            broker=broker,
            journal=journal,
            bus=bus,
            clock=clock,
            orders=orders,
            portfolio=portfolio,
            gate=gate,
            days=days,
        )
        self.state = state
        self._market_open = market_open
        self._buying_power = buying_power
        self.duplicates_skipped = 0
        self._checked_in: dict[str, TradingState | None] = {}
        """Orders ``begin`` let through and ``send`` has not taken yet: the trading state
        the gate saw (None: unchecked)."""

    # ---- submission -------------------------------------------------------------------

    def risk_context(self, symbol: str) -> RiskContext:
        now = self.clock.now()
        return build_risk_context(
            symbol,
            now=now,
            state=self.state.state,
            market_open=self._market_open(now),
            portfolio=self.portfolio,
            open_order_qty=self.orders.open_qty(symbol),
            buying_power=self._buying_power(),
            orders_today=self.days.orders_today,
            day_trades_5d=self.days.day_trades_5d(),
            known_client_order_ids=self.known_ids,
        )

    async def submit(self, request: OrderRequest, *, checked: bool = True) -> SubmitResult:
        """Send an order. ``checked=False`` skips the risk gate: only the kill switch's own
        closing orders use it, so a halt can never stop us getting flat."""
        started = self.begin(request, checked=checked)
        if isinstance(started, SubmitResult):
            return started
        return await self.send(started, request)

    def begin(self, request: OrderRequest, *, checked: bool = True) -> Order | SubmitResult:
        """The synchronous half of ``submit``: the risk gate, then the order in the book, in
        the journal's write-behind buffer and in flight. Returns the order to ``send``, or
        the refusal. Between the two, only a change of trading state matters (``send``
        checks it); the bar path calls this as soon as the strategy asks, and sends from a
        task of its own."""
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
                self._publish_refusal(request, decision.reason, decision.detail)
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
        self._checked_in[order.client_order_id] = self.state.state if checked else None
        return order

    def _publish_refusal(self, request: OrderRequest, reason: RejectReason, detail: str) -> None:
        self.bus.publish(
            RiskRejected(
                ts=self.clock.now(),
                client_order_id=request.client_order_id,
                symbol=request.symbol,
                side=request.side,
                qty=request.qty,
                reason=reason.value,
                detail=detail,
            )
        )

    async def send(self, order: Order, request: OrderRequest) -> SubmitResult:
        """The broker half of ``submit``, for an order ``begin`` let through. A checked
        order the gate let through while ACTIVE is not sent if trading has since become
        REDUCING or HALTED (a flatten, a halt): it is rejected here, and the strategy asks
        again on a later bar if it still wants to."""
        checked_in = self._checked_in.pop(order.client_order_id, None)
        now = self.state.state
        if checked_in is not None and now is not checked_in and now is not TradingState.ACTIVE:
            self.in_flight.discard(order.client_order_id)
            detail = (
                f"not sent: trading went from {checked_in.value} to "
                f"{now.value} before it reached the broker"
            )
            self.set_status(order, S.REJECTED, detail)
            reason = (
                RejectReason.HALTED if now is TradingState.HALTED else RejectReason.REDUCING_ONLY
            )
            self._publish_refusal(request, reason, detail)
            return SubmitResult(order, reason, detail)
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
