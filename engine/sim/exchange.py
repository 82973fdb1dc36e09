"""A synchronous, deterministic exchange and brokerage account.

``SimExchange`` knows nothing of asyncio: the sim broker, a fake Alpaca server and backtests
all drive the same core. Given the same calls it makes the same fills; only the uuid ids
differ between runs.

Time: every call works at ``max(clock.now(), the data's timestamp, the last time seen)``, so
the exchange never goes back in time. A replay must drive it with a ``ReplayClock`` or bar
timestamps; a wall clock outside market hours fills nothing.

Matching, on each price while the market is open, oldest order first:
- market orders fill at the price with slippage; limit orders fill when the price reaches
  the limit, at the slipped price but never worse than the limit;
- with ``max_fill_qty > 0`` an order fills at most that much per price update;
- an order placed while the market is open fills at once when a price from the current
  session is known; an order placed while closed is ``accepted`` and waits for the first
  price of the next session; IOC remainders are canceled at once;
- DAY orders still open at their session's close expire, checked on every call.

Money (cash, positions, buying power, day trades, the close's equity) follows the rules in
``engine.sim.account``. An order that would open more exposure than the buying power is
``rejected``; an order with no known price is accepted.

Persistence: with ``state_path`` every change is committed to an append-only state file
(``engine.sim.ledger``) and read back by the constructor. Prices are saved once per market
minute (and by ``flush``): a replay restarts after the last minute seen, not the last fill.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from engine.calendar import MarketCalendar
from engine.clock import Clock
from engine.domain import (
    ZERO,
    Account,
    Bar,
    OrderType,
    Position,
    Side,
    TimeInForce,
    ensure_utc,
)
from engine.errors import BrokerRejected, OrderNotFound
from engine.sim.account import SimAccount
from engine.sim.intake import new_order
from engine.sim.ledger import OrderLedger
from engine.sim.models import (
    CANCELED,
    EXPIRED,
    FILLED,
    REJECTED,
    CloseOutcome,
    CommissionModel,
    ExecutionRecord,
    OrderRecord,
    SlippageModel,
    TradeUpdateRecord,
)
from engine.sim.store import SimStateStore

log = logging.getLogger(__name__)

Listener = Callable[[TradeUpdateRecord], None]

MINUTE = timedelta(minutes=1)
FOREVER = datetime.max.replace(tzinfo=UTC)


class SimExchange:
    """The simulated venue: orders, matching, account and positions, optionally persisted."""

    def __init__(
        self,
        state_path: Path | None,
        *,
        starting_cash: Decimal,
        slippage: SlippageModel,
        commission: CommissionModel,
        max_fill_qty: Decimal = ZERO,
        calendar: MarketCalendar,
        clock: Clock,
    ) -> None:
        if max_fill_qty < ZERO:
            raise ValueError(f"max_fill_qty must be >= 0, got {max_fill_qty}")
        self._slippage = slippage
        self._commission = commission
        self._max_fill = max_fill_qty
        self._calendar = calendar
        self._clock = clock
        self._listener: Listener | None = None
        self._pending: list[TradeUpdateRecord] = []
        self._dirty = False
        self._prices_unsaved = False

        now = ensure_utc(clock.now())
        self._account = SimAccount(starting_cash, calendar, now)
        self._ledger = OrderLedger(None if state_path is None else SimStateStore(state_path))
        self._last_ts = now
        self._next_minute = now.replace(second=0, microsecond=0) + MINUTE
        """The start of the minute after ``_last_ts``: prices are saved when time reaches it."""
        self._next_expiry = FOREVER
        """No open order expires before this (an order closed since may make it early)."""
        saved_at = self._ledger.load(self._account)
        if saved_at is not None:
            self._last_ts = max(now, saved_at)
            self._next_minute = self._last_ts.replace(second=0, microsecond=0) + MINUTE
            self._next_expiry = datetime.min.replace(tzinfo=UTC)  # the first call looks
        else:
            self._dirty = True
            self._commit()

    # -- wiring -----------------------------------------------------------------------------

    @property
    def calendar(self) -> MarketCalendar:
        return self._calendar

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def last_ts(self) -> datetime:
        """The latest market time the exchange has worked at. After a restart: the time of
        the last save, i.e. the last price time seen in full, or a later change."""
        return self._last_ts

    def flush(self) -> None:
        """Save the prices seen since the last save and close the state file (on a clean
        stop; the next change opens it again)."""
        if self._prices_unsaved:
            self._save()
        self._ledger.release()

    def commit(self) -> None:
        """Save what changed since the last save, then send the trade updates it made (what
        ``submit(hold=True)`` left for it; nothing when nothing is pending)."""
        self._commit()

    def set_listener(self, callback: Listener | None) -> None:
        """Receive every trade update, after the state that produced it is saved."""
        self._listener = callback

    # -- orders -----------------------------------------------------------------------------

    def submit(
        self,
        symbol: str,
        side: Side | str,
        qty: Decimal | str | int,
        type: OrderType | str = OrderType.MARKET,
        time_in_force: TimeInForce | str = TimeInForce.DAY,
        limit_price: Decimal | str | None = None,
        client_order_id: str | None = None,
        *,
        hold: bool = False,
    ) -> OrderRecord:
        """Place an order. Raises ``BrokerRejected`` for a malformed order (Alpaca's 422) and
        ``DuplicateClientOrderId`` for a reused id; an order the account cannot afford is
        recorded as ``rejected`` and returned. With ``hold`` the order and what it did are
        saved and reported by the next ``commit()`` (or the next call that commits), so that
        several orders share one save; the caller must not answer for it before then."""
        with self._step(commit=not hold) as now:
            order = new_order(
                symbol,
                side,
                qty,
                type,
                time_in_force,
                limit_price,
                client_order_id,
                now=now,
                calendar=self._calendar,
                used_client_ids=self._ledger.by_client_id,
            )
            return self._place(order, now)

    def cancel(self, order_id: str) -> OrderRecord:
        """Cancel an open order at once. ``OrderNotFound`` for an unknown id,
        ``BrokerRejected`` when it is already done (Alpaca's 422)."""
        with self._step() as now:
            order = self._ledger.orders.get(order_id)
            if order is None:
                raise OrderNotFound(f"order not found: {order_id}")
            if not order.is_open:
                raise BrokerRejected(f"order is not cancelable (status {order.status})")
            return self._cancel(order, now)

    def cancel_all(self) -> list[OrderRecord]:
        """Cancel every open order; returns the canceled orders."""
        with self._step() as now:
            return [self._cancel(o, now) for o in list(self._ledger.open_orders())]

    def close_position(self, symbol: str) -> OrderRecord:
        """Cancel the symbol's open orders, then send a market order for the whole position."""
        with self._step() as now:
            symbol = symbol.strip().upper()
            if symbol not in self._account.positions:
                raise OrderNotFound(f"position not found: {symbol}")
            for order in list(self._ledger.open_for(symbol)):
                self._cancel(order, now)
            return self._close(symbol, now)

    def close_all(self, cancel_orders: bool = True) -> list[CloseOutcome]:
        """Close every position (cancelling all open orders first when asked), one outcome
        per symbol: 200 with the closing order, or 403 when open orders hold the shares."""
        with self._step() as now:
            if cancel_orders:
                for order in list(self._ledger.open_orders()):
                    self._cancel(order, now)
            outcomes: list[CloseOutcome] = []
            for symbol in sorted(self._account.positions):
                position = self._account.positions[symbol]
                closing = Side.SELL if position.qty > ZERO else Side.BUY
                held = self._ledger.open_qty(symbol, closing)
                if held > ZERO:
                    outcomes.append(CloseOutcome.held(symbol, abs(position.qty), held))
                    continue
                outcomes.append(CloseOutcome(symbol, 200, self._close(symbol, now), ""))
            return outcomes

    # -- market data ------------------------------------------------------------------------

    def on_price(self, symbol: str, price: Decimal, ts: datetime) -> None:
        """A trade at ``price``: expire what is due, then match the symbol's open orders.

        The hot path of a replay (once per bar): a symbol with no open order costs a quote
        and the time check, no context manager, no list, no save unless the minute ended."""
        if not price.is_finite() or price <= ZERO:
            raise ValueError(f"{symbol}: price must be positive, got {price}")
        symbol = symbol.upper()
        now = self._advance(ts)
        try:
            self._account.set_quote(symbol, price, now)
            self._prices_unsaved = True
            if self._ledger.has_open(symbol) and self._calendar.is_open(now):
                for order in list(self._ledger.open_for(symbol)):
                    order = self._ledger.orders[order.id]  # an earlier match may change it
                    if order.is_open:
                        self._match(order, price, now)
        finally:
            if self._dirty or self._pending:
                self._commit()

    def on_bar(self, bar: Bar) -> None:
        """A bar is a price update at its close."""
        self.on_price(bar.symbol, bar.close, bar.ts)

    def on_clock(self, ts: datetime | None = None) -> None:
        """Let time pass without a price: expire DAY orders, record the close's equity."""
        with self._step(ts):
            pass

    # -- queries ----------------------------------------------------------------------------

    def get_order(self, order_id: str) -> OrderRecord:
        with self._step():
            order = self._ledger.orders.get(order_id)
            if order is None:
                raise OrderNotFound(f"order not found: {order_id}")
            return order

    def order_by_client_id(self, client_order_id: str) -> OrderRecord | None:
        with self._step():
            return self._ledger.by_client(client_order_id)

    def open_orders(self) -> list[OrderRecord]:
        with self._step():
            return list(self._ledger.open_orders())

    def orders_since(self, ts: datetime) -> list[OrderRecord]:
        """Every order (any status) created at or after ``ts``, oldest first."""
        since = ensure_utc(ts)
        with self._step():
            return [o for o in self._ledger.orders.values() if o.created_at >= since]

    def executions_since(self, ts: datetime) -> list[ExecutionRecord]:
        since = ensure_utc(ts)
        with self._step():
            return [e for e in self._ledger.executions if e.transaction_time >= since]

    def positions(self) -> list[Position]:
        with self._step():
            return self._account.position_list()

    def last_price(self, symbol: str) -> Decimal | None:
        return self._account.last_price(symbol.upper())

    def account(self) -> Account:
        with self._step() as now:
            return self._account.snapshot(now, self._ledger.open_orders())

    # -- order internals --------------------------------------------------------------------

    def _place(self, order: OrderRecord, now: datetime) -> OrderRecord:
        if not self._account.affordable(order, self._ledger.open_orders()):
            rejected = replace(order, status=REJECTED, failed_at=now)
            self._update(rejected, "rejected", now)
            return rejected
        self._update(order, "new", now)
        quote = self._account.session_quote(order.symbol, now)
        if quote is not None:
            self._match(order, quote.price, now)
        current = self._ledger.orders[order.id]
        if order.time_in_force is TimeInForce.IOC and current.is_open:
            current = self._cancel(current, now)
        return current

    def _close(self, symbol: str, now: datetime) -> OrderRecord:
        position = self._account.positions[symbol]
        side = Side.SELL if position.qty > ZERO else Side.BUY
        order = new_order(
            symbol,
            side,
            abs(position.qty),
            now=now,
            calendar=self._calendar,
            used_client_ids=self._ledger.by_client_id,
        )
        return self._place(order, now)

    def _cancel(self, order: OrderRecord, now: datetime) -> OrderRecord:
        canceled = replace(order, status=CANCELED, canceled_at=now, updated_at=now)
        self._update(canceled, "canceled", now)
        return canceled

    def _match(self, order: OrderRecord, price: Decimal, now: datetime) -> None:
        if not order.marketable_at(price):
            return
        fill_price = self._slippage.fill_price(price, order.side, order.limit_price)
        qty = order.remaining_qty
        if self._max_fill > ZERO:
            qty = min(qty, self._max_fill)
        self._execute(order, qty, fill_price, now)

    def _execute(self, order: OrderRecord, qty: Decimal, price: Decimal, now: datetime) -> None:
        commission = self._commission.for_execution(order.filled_qty, qty)
        position_qty = self._account.settle(order, qty, price, commission, now)
        updated, execution = self._ledger.execute(order, qty, price, commission, now)
        self._dirty = True
        self._emit(
            TradeUpdateRecord(
                event="fill" if updated.status == FILLED else "partial_fill",
                order=updated,
                timestamp=now,
                execution_id=execution.id,
                price=price,
                qty=qty,
                position_qty=position_qty,
                commission=commission,
            )
        )

    # -- time -------------------------------------------------------------------------------

    @contextmanager
    def _step(self, ts: datetime | None = None, *, commit: bool = True) -> Iterator[datetime]:
        """One public call: bring time forward, run the body, save, then notify (unless the
        caller commits later: ``submit(hold=True)``)."""
        now = self._advance(ts)
        try:
            yield now
        finally:
            if commit:
                self._commit()

    def _advance(self, ts: datetime | None) -> datetime:
        now = self._clock.now()
        if now.tzinfo is not UTC:
            now = ensure_utc(now)
        if ts is not None:
            if ts.tzinfo is not UTC:
                ts = ensure_utc(ts)
            if ts > now:
                now = ts
        if now < self._last_ts:
            now = self._last_ts
        elif now >= self._next_minute:
            # Every price of the previous minute is in: save them before time moves on.
            if self._prices_unsaved:
                self._save()
            self._next_minute = now.replace(second=0, microsecond=0) + MINUTE
        self._last_ts = now
        if now >= self._next_expiry:
            self._expire(now)
        if self._account.roll_equity(now):
            self._dirty = True
        return now

    def _expire(self, now: datetime) -> None:
        """Expire the open orders due at ``now``; then note when the next one is due."""
        for order in list(self._ledger.open_orders()):
            if order.expires_at is not None and order.expires_at <= now:
                at = order.expires_at
                expired = replace(order, status=EXPIRED, expired_at=at, updated_at=at)
                self._update(expired, "expired", at)
        self._next_expiry = min(
            (o.expires_at for o in self._ledger.open_orders() if o.expires_at is not None),
            default=FOREVER,
        )

    # -- state, events, persistence ---------------------------------------------------------

    def _update(self, order: OrderRecord, event: str, ts: datetime) -> None:
        """A new version of ``order`` and the trade update that reports it."""
        self._ledger.put(order)
        if order.is_open and order.expires_at is not None and order.expires_at < self._next_expiry:
            self._next_expiry = order.expires_at
        self._dirty = True
        self._emit(TradeUpdateRecord(event=event, order=order, timestamp=ts))

    def _emit(self, update: TradeUpdateRecord) -> None:
        self._pending.append(update)

    def _commit(self) -> None:
        if self._dirty:
            self._save()
        self._dirty = False
        updates, self._pending = self._pending, []
        listener = self._listener
        if listener is None:
            return
        for update in updates:
            try:
                listener(update)
            except Exception:
                # The venue's state is already committed; a consumer's bug must not undo
                # it or hide the later updates.
                log.exception("sim trade-update listener failed on %s", update.event)

    def _save(self) -> None:
        self._ledger.save(self._account, self._last_ts)
        self._prices_unsaved = False
