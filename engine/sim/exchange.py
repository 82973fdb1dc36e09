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

Account rules: cash moves by each execution's notional rounded half-up to the cent, plus its
commission. Buying power is margin-style ``2 * equity - gross exposure - the opening part of
open orders`` (never negative), marked at the last price (the average entry price before any
price is known). An order that would open more exposure than that is ``rejected``; an order
with no known price is accepted. A position's average entry price excludes commission.
Day trades: an order whose first execution reduces a position opened or added to on the same
trading day; counted over the last five sessions.

Persistence: with ``state_path`` every account change is committed to an append-only state
file (``engine.sim.store``: the account snapshot plus the orders and executions that changed)
and read back by the constructor, open orders included. Last prices are saved with the next
account change rather than on every tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from uuid import uuid4

from engine.calendar import MarketCalendar
from engine.clock import Clock, trading_day
from engine.domain import (
    ZERO,
    Account,
    Bar,
    OrderType,
    Position,
    Side,
    TimeInForce,
    ensure_utc,
    parse_utc,
    to_decimal,
)
from engine.errors import BrokerRejected, DuplicateClientOrderId, OrderNotFound
from engine.sim.models import (
    ACCEPTED,
    CANCELED,
    CENT,
    EXPIRED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    CommissionModel,
    ExecutionRecord,
    OrderRecord,
    SlippageModel,
    TradeUpdateRecord,
    record_from_json,
    record_to_json,
    round_half_up,
)
from engine.sim.store import SimStateStore

log = logging.getLogger(__name__)

MARGIN_MULTIPLIER = Decimal(2)
DAYTRADE_WINDOW_SESSIONS = 5
MAX_CLIENT_ORDER_ID = 128

Listener = Callable[[TradeUpdateRecord], None]
E = TypeVar("E", bound=StrEnum)


class CloseOutcome(NamedTuple):
    """One symbol's result of ``close_all`` (Alpaca answers 207 with one item per symbol)."""

    symbol: str
    status: int
    order: OrderRecord | None
    message: str


class _Quote(NamedTuple):
    price: Decimal
    ts: datetime


def _enum(kind: type[E], value: object, name: str) -> E:
    try:
        return kind(str(value))
    except ValueError:
        raise BrokerRejected(f"invalid {name}: {value!r}") from None


def _decimal(value: object, name: str) -> Decimal:
    try:
        return to_decimal(value, field=name)
    except ValueError as exc:
        raise BrokerRejected(str(exc)) from None


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
        if starting_cash <= ZERO:
            raise ValueError(f"starting_cash must be positive, got {starting_cash}")
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

        now = ensure_utc(clock.now())
        self._starting_cash = starting_cash
        self._cash = starting_cash
        self._positions: dict[str, Position] = {}
        self._orders: dict[str, OrderRecord] = {}
        self._by_client_id: dict[str, str] = {}
        self._open: dict[str, None] = {}  # open order ids, oldest first
        self._executions: list[ExecutionRecord] = []
        self._quotes: dict[str, _Quote] = {}
        self._last_equity = starting_cash
        self._equity_close = calendar.previous_session(now).close
        self._next_roll = datetime.min.replace(tzinfo=UTC)
        self._daytrades: list[date] = []
        self._opened: dict[str, date] = {}
        self._last_ts = now

        self._store_file = SimStateStore(state_path) if state_path is not None else None
        self._changed_orders: dict[str, None] = {}
        self._saved_executions = 0
        if self._store_file is None or not self._load(self._store_file):
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
        """The latest market time the exchange has worked at. After a restart this is the
        time of the last saved change (price-only updates are not saved on their own)."""
        return self._last_ts

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
    ) -> OrderRecord:
        """Place an order. Raises ``BrokerRejected`` for a malformed order (Alpaca's 422) and
        ``DuplicateClientOrderId`` for a reused id; an order the account cannot afford is
        recorded as ``rejected`` and returned."""
        with self._step() as now:
            return self._submit(
                symbol, side, qty, type, time_in_force, limit_price, client_order_id, now
            )

    def cancel(self, order_id: str) -> OrderRecord:
        """Cancel an open order at once. ``OrderNotFound`` for an unknown id,
        ``BrokerRejected`` when it is already done (Alpaca's 422)."""
        with self._step() as now:
            order = self._orders.get(order_id)
            if order is None:
                raise OrderNotFound(f"order not found: {order_id}")
            if not order.is_open:
                raise BrokerRejected(f"order is not cancelable (status {order.status})")
            return self._cancel(order, now)

    def cancel_all(self) -> list[OrderRecord]:
        """Cancel every open order; returns the canceled orders."""
        with self._step() as now:
            return [self._cancel(self._orders[oid], now) for oid in list(self._open)]

    def close_position(self, symbol: str) -> OrderRecord:
        """Cancel the symbol's open orders, then send a market order for the whole position."""
        with self._step() as now:
            symbol = symbol.strip().upper()
            if symbol not in self._positions:
                raise OrderNotFound(f"position not found: {symbol}")
            for oid in list(self._open):
                if self._orders[oid].symbol == symbol:
                    self._cancel(self._orders[oid], now)
            return self._close(symbol, now)

    def close_all(self, cancel_orders: bool = True) -> list[CloseOutcome]:
        """Close every position (cancelling all open orders first when asked), one outcome
        per symbol: 200 with the closing order, or 403 when open orders hold the shares."""
        with self._step() as now:
            if cancel_orders:
                for oid in list(self._open):
                    self._cancel(self._orders[oid], now)
            outcomes: list[CloseOutcome] = []
            for symbol in sorted(self._positions):
                position = self._positions[symbol]
                closing = Side.SELL if position.qty > ZERO else Side.BUY
                held = sum(
                    (
                        self._orders[oid].remaining_qty
                        for oid in self._open
                        if self._orders[oid].symbol == symbol and self._orders[oid].side is closing
                    ),
                    ZERO,
                )
                if held > ZERO:
                    message = (
                        f"insufficient qty available for order (requested: {abs(position.qty)}, "
                        f"available: {max(ZERO, abs(position.qty) - held)})"
                    )
                    outcomes.append(CloseOutcome(symbol, 403, None, message))
                    continue
                outcomes.append(CloseOutcome(symbol, 200, self._close(symbol, now), ""))
            return outcomes

    # -- market data ------------------------------------------------------------------------

    def on_price(self, symbol: str, price: Decimal, ts: datetime) -> None:
        """A trade at ``price``: expire what is due, then match the symbol's open orders."""
        if not price.is_finite() or price <= ZERO:
            raise ValueError(f"{symbol}: price must be positive, got {price}")
        symbol = symbol.upper()
        with self._step(ts) as now:
            self._quotes[symbol] = _Quote(price, now)
            if not self._calendar.is_open(now):
                return
            for oid in list(self._open):
                order = self._orders[oid]
                if order.symbol == symbol and order.is_open:
                    self._match(order, price, now)

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
            order = self._orders.get(order_id)
            if order is None:
                raise OrderNotFound(f"order not found: {order_id}")
            return order

    def order_by_client_id(self, client_order_id: str) -> OrderRecord | None:
        with self._step():
            oid = self._by_client_id.get(client_order_id)
            return None if oid is None else self._orders[oid]

    def open_orders(self) -> list[OrderRecord]:
        with self._step():
            return [self._orders[oid] for oid in self._open]

    def orders_since(self, ts: datetime) -> list[OrderRecord]:
        """Every order (any status) created at or after ``ts``, oldest first."""
        since = ensure_utc(ts)
        with self._step():
            return [o for o in self._orders.values() if o.created_at >= since]

    def executions_since(self, ts: datetime) -> list[ExecutionRecord]:
        since = ensure_utc(ts)
        with self._step():
            return [e for e in self._executions if e.transaction_time >= since]

    def positions(self) -> list[Position]:
        with self._step():
            return [
                replace(p, current_price=self._quotes[s].price if s in self._quotes else None)
                for s, p in sorted(self._positions.items())
            ]

    def last_price(self, symbol: str) -> Decimal | None:
        quote = self._quotes.get(symbol.upper())
        return None if quote is None else quote.price

    def account(self) -> Account:
        with self._step() as now:
            count = self._daytrade_count(now)
            return Account(
                equity=round_half_up(self._equity(), CENT),
                cash=round_half_up(self._cash, CENT),
                buying_power=round_half_up(self._buying_power(), CENT),
                last_equity=round_half_up(self._last_equity, CENT),
                daytrade_count=count,
                pattern_day_trader=count >= 4,
            )

    # -- order internals --------------------------------------------------------------------

    def _submit(
        self,
        symbol: str,
        side: object,
        qty: object,
        order_type: object,
        time_in_force: object,
        limit_price: object,
        client_order_id: str | None,
        now: datetime,
    ) -> OrderRecord:
        order = self._new_order(
            symbol, side, qty, order_type, time_in_force, limit_price, client_order_id, now
        )
        if not self._affordable(order):
            rejected = replace(order, status=REJECTED, failed_at=now)
            self._store(rejected)
            self._emit(TradeUpdateRecord(event="rejected", order=rejected, timestamp=now))
            return rejected
        self._store(order)
        self._emit(TradeUpdateRecord(event="new", order=order, timestamp=now))
        quote = self._session_quote(order.symbol, now)
        if quote is not None:
            self._match(order, quote.price, now)
        if order.time_in_force is TimeInForce.IOC and self._orders[order.id].is_open:
            self._cancel(self._orders[order.id], now)
        return self._orders[order.id]

    def _new_order(
        self,
        symbol: str,
        side: object,
        qty: object,
        order_type: object,
        time_in_force: object,
        limit_price: object,
        client_order_id: str | None,
        now: datetime,
    ) -> OrderRecord:
        symbol = symbol.strip().upper()
        if not symbol:
            raise BrokerRejected("symbol is required")
        side_ = _enum(Side, side, "side")
        type_ = _enum(OrderType, order_type, "type")
        tif = _enum(TimeInForce, time_in_force, "time_in_force")
        amount = _decimal(qty, "qty")
        if amount <= ZERO:
            raise BrokerRejected("qty must be > 0")
        limit: Decimal | None = None
        if type_ is OrderType.LIMIT:
            if limit_price is None:
                raise BrokerRejected("limit_price is required for limit orders")
            limit = _decimal(limit_price, "limit_price")
            if limit <= ZERO:
                raise BrokerRejected("limit_price must be > 0")
        elif limit_price is not None:
            raise BrokerRejected("limit_price is only allowed for limit orders")
        if amount != amount.to_integral_value() and tif is not TimeInForce.DAY:
            raise BrokerRejected("fractional orders must be DAY orders")
        cid = client_order_id or str(uuid4())
        if len(cid) > MAX_CLIENT_ORDER_ID:
            raise BrokerRejected(f"client_order_id must be at most {MAX_CLIENT_ORDER_ID} chars")
        if cid in self._by_client_id:
            raise DuplicateClientOrderId(f"client_order_id must be unique: {cid}")
        expires = self._calendar.trading_session_at(now).close if tif is TimeInForce.DAY else None
        return OrderRecord(
            id=str(uuid4()),
            client_order_id=cid,
            symbol=symbol,
            side=side_,
            qty=amount,
            type=type_,
            time_in_force=tif,
            limit_price=limit,
            status=NEW if self._calendar.is_open(now) else ACCEPTED,
            created_at=now,
            submitted_at=now,
            updated_at=now,
            expires_at=expires,
        )

    def _close(self, symbol: str, now: datetime) -> OrderRecord:
        position = self._positions[symbol]
        side = Side.SELL if position.qty > ZERO else Side.BUY
        return self._submit(
            symbol, side, abs(position.qty), OrderType.MARKET, TimeInForce.DAY, None, None, now
        )

    def _cancel(self, order: OrderRecord, now: datetime) -> OrderRecord:
        canceled = replace(order, status=CANCELED, canceled_at=now, updated_at=now)
        self._store(canceled)
        self._emit(TradeUpdateRecord(event="canceled", order=canceled, timestamp=now))
        return canceled

    def _match(self, order: OrderRecord, price: Decimal, now: datetime) -> None:
        if order.limit_price is not None:
            crossed = (
                price <= order.limit_price
                if order.side is Side.BUY
                else (price >= order.limit_price)
            )
            if not crossed:
                return
        fill_price = self._slippage.fill_price(price, order.side, order.limit_price)
        qty = order.remaining_qty
        if self._max_fill > ZERO:
            qty = min(qty, self._max_fill)
        self._execute(order, qty, fill_price, now)

    def _execute(self, order: OrderRecord, qty: Decimal, price: Decimal, now: datetime) -> None:
        commission = self._commission.for_execution(order.filled_qty, qty)
        notional = round_half_up(qty * price, CENT)
        self._cash -= order.side.sign * notional + commission
        position_qty = self._apply_position(order, qty, price, now)
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
        self._store(updated)
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
        self._executions.append(execution)
        self._emit(
            TradeUpdateRecord(
                event="fill" if done else "partial_fill",
                order=updated,
                timestamp=now,
                execution_id=execution.id,
                price=price,
                qty=qty,
                position_qty=position_qty,
                commission=commission,
            )
        )

    def _apply_position(
        self, order: OrderRecord, qty: Decimal, price: Decimal, now: datetime
    ) -> Decimal:
        """Move the position by one execution; returns the new signed quantity."""
        held = self._positions.get(order.symbol)
        old_qty = held.qty if held is not None else ZERO
        old_avg = held.avg_entry_price if held is not None else ZERO
        delta = qty * order.side.sign
        new_qty = old_qty + delta
        reduces = old_qty != ZERO and (old_qty > ZERO) != (delta > ZERO)
        flips = reduces and new_qty != ZERO and (new_qty > ZERO) != (old_qty > ZERO)
        if not reduces:
            avg = (abs(old_qty) * old_avg + qty * price) / abs(new_qty)
        elif flips:  # the part beyond zero was opened at this price
            avg = price
        else:
            avg = old_avg
        day = trading_day(now)
        if reduces and order.filled_qty == ZERO and self._opened.get(order.symbol) == day:
            self._daytrades.append(day)
        if not reduces or flips:
            self._opened[order.symbol] = day
        if new_qty == ZERO:
            del self._positions[order.symbol]
        else:
            self._positions[order.symbol] = Position(order.symbol, new_qty, avg)
        return new_qty

    # -- account internals ------------------------------------------------------------------

    def _mark(self, symbol: str) -> Decimal:
        quote = self._quotes.get(symbol)
        return quote.price if quote is not None else self._positions[symbol].avg_entry_price

    def _equity(self) -> Decimal:
        return self._cash + sum((p.qty * self._mark(s) for s, p in self._positions.items()), ZERO)

    def _opening_qty(self, symbol: str, side: Side, qty: Decimal) -> Decimal:
        """The part of an order that would open or add exposure rather than reduce it."""
        held = self._positions.get(symbol)
        position = held.qty if held is not None else ZERO
        reducible = max(ZERO, -position) if side is Side.BUY else max(ZERO, position)
        return qty - min(qty, reducible)

    def _order_price(self, order: OrderRecord) -> Decimal | None:
        if order.limit_price is not None:
            return order.limit_price
        quote = self._quotes.get(order.symbol)
        return None if quote is None else quote.price

    def _buying_power(self) -> Decimal:
        gross = sum((abs(p.qty) * self._mark(s) for s, p in self._positions.items()), ZERO)
        reserved = ZERO
        for oid in self._open:
            order = self._orders[oid]
            price = self._order_price(order)
            if price is not None:
                opening = self._opening_qty(order.symbol, order.side, order.remaining_qty)
                reserved += opening * price
        return max(ZERO, MARGIN_MULTIPLIER * self._equity() - gross - reserved)

    def _affordable(self, order: OrderRecord) -> bool:
        opening = self._opening_qty(order.symbol, order.side, order.qty)
        price = self._order_price(order)
        if opening == ZERO or price is None:
            return True
        return opening * price <= self._buying_power()

    def _session_quote(self, symbol: str, now: datetime) -> _Quote | None:
        """The last price if it was seen in the session open at ``now``."""
        quote = self._quotes.get(symbol)
        if quote is None or not self._calendar.is_open(now):
            return None
        session = self._calendar.session(trading_day(now))
        return quote if session is not None and quote.ts >= session.open else None

    def _daytrade_window_start(self, now: datetime) -> date:
        today = trading_day(now)
        recent = self._calendar.sessions(today - timedelta(days=14), today)
        return recent[-DAYTRADE_WINDOW_SESSIONS:][0].day if recent else today

    def _daytrade_count(self, now: datetime) -> int:
        start = self._daytrade_window_start(now)
        return sum(1 for day in self._daytrades if day >= start)

    # -- time -------------------------------------------------------------------------------

    @contextmanager
    def _step(self, ts: datetime | None = None) -> Iterator[datetime]:
        """One public call: bring time forward, run the body, save, then notify."""
        now = self._advance(ts)
        try:
            yield now
        finally:
            self._commit()

    def _advance(self, ts: datetime | None) -> datetime:
        now = ensure_utc(self._clock.now())
        if ts is not None:
            now = max(now, ensure_utc(ts))
        now = max(now, self._last_ts)
        self._last_ts = now
        self._expire(now)
        self._roll_equity(now)
        return now

    def _expire(self, now: datetime) -> None:
        for oid in list(self._open):
            order = self._orders[oid]
            if order.expires_at is not None and order.expires_at <= now:
                at = order.expires_at
                expired = replace(order, status=EXPIRED, expired_at=at, updated_at=at)
                self._store(expired)
                self._emit(TradeUpdateRecord(event="expired", order=expired, timestamp=at))

    def _roll_equity(self, now: datetime) -> None:
        """At the first call after a session close, that equity becomes ``last_equity``."""
        if now < self._next_roll:
            return
        previous = self._calendar.previous_session(now)
        if previous.close > self._equity_close:
            self._last_equity = self._equity()
            self._equity_close = previous.close
            start = self._daytrade_window_start(now)
            self._daytrades = [day for day in self._daytrades if day >= start]
            self._dirty = True
        self._next_roll = self._calendar.next_session(previous.close).close

    # -- state, events, persistence ---------------------------------------------------------

    def _store(self, order: OrderRecord) -> None:
        self._orders[order.id] = order
        self._by_client_id[order.client_order_id] = order.id
        if order.is_open:
            self._open[order.id] = None
        else:
            self._open.pop(order.id, None)
        self._changed_orders[order.id] = None
        self._dirty = True

    def _emit(self, update: TradeUpdateRecord) -> None:
        self._pending.append(update)

    def _commit(self) -> None:
        if self._dirty and self._store_file is not None:
            self._save(self._store_file)
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

    def _account_json(self) -> dict[str, Any]:
        return {
            "starting_cash": str(self._starting_cash),
            "cash": str(self._cash),
            "last_equity": str(self._last_equity),
            "equity_close": self._equity_close.isoformat(),
            "last_ts": self._last_ts.isoformat(),
            "positions": [
                {"symbol": p.symbol, "qty": str(p.qty), "avg_entry_price": str(p.avg_entry_price)}
                for p in self._positions.values()
            ],
            "quotes": {
                s: {"price": str(q.price), "ts": q.ts.isoformat()} for s, q in self._quotes.items()
            },
            "daytrades": [day.isoformat() for day in self._daytrades],
            "opened": {s: day.isoformat() for s, day in self._opened.items()},
        }

    def _save(self, store: SimStateStore) -> None:
        account = self._account_json()
        if store.needs_compaction:
            store.compact(
                account,
                [record_to_json(o) for o in self._orders.values()],
                [record_to_json(e) for e in self._executions],
            )
        else:
            store.append(
                account,
                [record_to_json(self._orders[oid]) for oid in self._changed_orders],
                [record_to_json(e) for e in self._executions[self._saved_executions :]],
            )
        self._changed_orders.clear()
        self._saved_executions = len(self._executions)

    def _load(self, store: SimStateStore) -> bool:
        """Restore the committed state; False when there is none yet."""
        path = store.path
        try:
            stored = store.load()
            if stored is None:
                return False
            state = stored.account
            self._starting_cash = Decimal(state["starting_cash"])
            self._cash = Decimal(state["cash"])
            self._last_equity = Decimal(state["last_equity"])
            self._equity_close = parse_utc(state["equity_close"])
            self._last_ts = max(self._last_ts, parse_utc(state["last_ts"]))
            self._positions = {
                p["symbol"]: Position(p["symbol"], Decimal(p["qty"]), Decimal(p["avg_entry_price"]))
                for p in state["positions"]
            }
            for raw in stored.orders.values():
                order = record_from_json(OrderRecord, raw)
                self._orders[order.id] = order
                self._by_client_id[order.client_order_id] = order.id
                if order.is_open:
                    self._open[order.id] = None
            self._executions = [
                record_from_json(ExecutionRecord, e) for e in stored.executions.values()
            ]
            self._saved_executions = len(self._executions)
            self._quotes = {
                s: _Quote(Decimal(q["price"]), parse_utc(q["ts"]))
                for s, q in state["quotes"].items()
            }
            self._daytrades = [date.fromisoformat(d) for d in state["daytrades"]]
            self._opened = {s: date.fromisoformat(d) for s, d in state["opened"].items()}
            return True
        except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise ValueError(f"simulator state {path} is unreadable: {exc}") from exc
