"""The simulated brokerage account: cash, positions, marks, buying power, day trades and the
close's equity. ``engine.sim.exchange`` matches orders and calls ``settle`` for each execution;
everything about money is here.

Rules (the same as the module doc of ``engine.sim.exchange`` states for the whole venue):
- cash moves by each execution's notional rounded half-up to the cent, plus its commission;
- a position's average entry price excludes commission; the part of a fill beyond zero (a
  flip) opens at the fill price;
- buying power is margin-style ``2 * equity - gross exposure - the opening part of open
  orders`` (never negative; ``engine.buying_power.margin_buying_power``, the rule the
  engine's own estimate uses too), marked at the last price (the average entry price before
  any price is known);
- a day trade is an order whose first execution reduces a position opened or added to on the
  same trading day; they are counted over the last five sessions;
- at the first call after a session close, that equity becomes ``last_equity``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from engine.buying_power import margin_buying_power, opening_qty
from engine.calendar import MarketCalendar
from engine.clock import trading_day
from engine.domain import (
    EXACT,
    ZERO,
    Account,
    Exposure,
    Position,
    Side,
    money,
    parse_utc,
    settlement,
)
from engine.sim.models import OrderRecord

DAYTRADE_WINDOW_SESSIONS = 5


class Quote(NamedTuple):
    """The last trade price of a symbol and when it was seen."""

    price: Decimal
    ts: datetime


class SimAccount:
    """One account's money and positions. Synchronous; the exchange owns time and orders."""

    def __init__(self, starting_cash: Decimal, calendar: MarketCalendar, now: datetime) -> None:
        if starting_cash <= ZERO:
            raise ValueError(f"starting_cash must be positive, got {starting_cash}")
        self._calendar = calendar
        self.starting_cash = starting_cash
        self.cash = starting_cash
        self.positions: dict[str, Position] = {}
        self.quotes: dict[str, Quote] = {}
        self.last_equity = starting_cash
        self.equity_close = calendar.previous_session(now).close
        self._next_roll = datetime.min.replace(tzinfo=UTC)
        self.daytrades: dict[date, int] = {}
        """Day trades by the session they were made in (the last five sessions' only)."""
        self.opened: dict[str, date] = {}
        self._unsaved_quotes: set[str] = set()
        """Symbols whose quote changed since the last save."""
        self._unsaved_symbols: set[str] = set()
        """Symbols whose position or opening day changed since the last save."""
        self._exposure = Exposure()
        """The positions' values at ``mark``, moved by each quote and each execution, so
        equity and buying power (asked on every order) do not walk every position."""

    def set_quote(self, symbol: str, price: Decimal, ts: datetime) -> None:
        """A trade price seen at ``ts`` (saved with the next save)."""
        held = self.positions.get(symbol)
        if held is not None:
            self._exposure.marked(held.qty, self.mark(symbol), price)
        self.quotes[symbol] = Quote(price, ts)
        self._unsaved_quotes.add(symbol)

    # -- executions -------------------------------------------------------------------------

    def settle(
        self,
        order: OrderRecord,
        qty: Decimal,
        price: Decimal,
        commission: Decimal,
        now: datetime,
    ) -> Decimal:
        """Book one execution of ``order`` (before the order record counts it); returns the
        symbol's signed position after it."""
        self.cash -= order.side.sign * settlement(qty, price) + commission
        self._unsaved_symbols.add(order.symbol)
        held = self.positions.get(order.symbol)
        before = ZERO if held is None else self._value(held)
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
        if reduces and order.filled_qty == ZERO and self.opened.get(order.symbol) == day:
            self.daytrades[day] = self.daytrades.get(day, 0) + 1
        if not reduces or flips:
            self.opened[order.symbol] = day
        if new_qty == ZERO:
            del self.positions[order.symbol]
            self._exposure.revalued(before, ZERO)
        else:
            position = self.positions[order.symbol] = Position(order.symbol, new_qty, avg)
            self._exposure.revalued(before, self._value(position))
        return new_qty

    # -- valuation --------------------------------------------------------------------------

    def mark(self, symbol: str) -> Decimal:
        quote = self.quotes.get(symbol)
        return quote.price if quote is not None else self.positions[symbol].avg_entry_price

    def last_price(self, symbol: str) -> Decimal | None:
        quote = self.quotes.get(symbol)
        return None if quote is None else quote.price

    def session_quote(self, symbol: str, now: datetime) -> Quote | None:
        """The last price if it was seen in the session open at ``now``."""
        quote = self.quotes.get(symbol)
        if quote is None or not self._calendar.is_open(now):
            return None
        session = self._calendar.session(trading_day(now))
        return quote if session is not None and quote.ts >= session.open else None

    def equity(self) -> Decimal:
        return self.cash + self._exposure.net

    def _value(self, position: Position) -> Decimal:
        """The position's signed value at ``mark``."""
        return EXACT.multiply(position.qty, self.mark(position.symbol))

    def _total(self) -> None:
        """The running totals from scratch (after loading a saved state)."""
        self._exposure.reset(self._value(p) for p in self.positions.values())

    def opening_qty(self, symbol: str, side: Side, qty: Decimal) -> Decimal:
        """The part of an order that would open or add exposure rather than reduce it."""
        held = self.positions.get(symbol)
        return opening_qty(held.qty if held is not None else ZERO, side, qty)

    def order_price(self, order: OrderRecord) -> Decimal | None:
        return order.limit_price if order.limit_price is not None else self.last_price(order.symbol)

    def buying_power(self, open_orders: Iterable[OrderRecord]) -> Decimal:
        gross = self._exposure.gross
        reserved = ZERO
        for order in open_orders:
            price = self.order_price(order)
            if price is not None:
                opening = self.opening_qty(order.symbol, order.side, order.remaining_qty)
                reserved += opening * price
        return max(ZERO, margin_buying_power(self.equity(), gross, reserved))

    def affordable(self, order: OrderRecord, open_orders: Iterable[OrderRecord]) -> bool:
        opening = self.opening_qty(order.symbol, order.side, order.qty)
        price = self.order_price(order)
        if opening == ZERO or price is None:
            return True
        return opening * price <= self.buying_power(open_orders)

    def snapshot(self, now: datetime, open_orders: Iterable[OrderRecord]) -> Account:
        """The account as the broker reports it, money rounded half-up to the cent."""
        count = self.daytrade_count(now)
        return Account(
            equity=money(self.equity()),
            cash=money(self.cash),
            buying_power=money(self.buying_power(open_orders)),
            last_equity=money(self.last_equity),
            daytrade_count=count,
            pattern_day_trader=count >= 4,
        )

    def position_list(self) -> list[Position]:
        """Open positions by symbol, each with its last price."""
        return [
            replace(p, current_price=self.quotes[s].price if s in self.quotes else None)
            for s, p in sorted(self.positions.items())
        ]

    # -- day trades and the close -----------------------------------------------------------

    def _daytrade_window_start(self, now: datetime) -> date:
        today = trading_day(now)
        recent = self._calendar.sessions(today - timedelta(days=14), today)
        return recent[-DAYTRADE_WINDOW_SESSIONS:][0].day if recent else today

    def daytrade_count(self, now: datetime) -> int:
        start = self._daytrade_window_start(now)
        return sum(n for day, n in self.daytrades.items() if day >= start)

    def roll_equity(self, now: datetime) -> bool:
        """At the first call after a session close, that equity becomes ``last_equity``.
        Returns True when the account changed."""
        if now < self._next_roll:
            return False
        previous = self._calendar.previous_session(now)
        changed = False
        if previous.close > self.equity_close:
            self.last_equity = self.equity()
            self.equity_close = previous.close
            start = self._daytrade_window_start(now)
            self.daytrades = {day: n for day, n in self.daytrades.items() if day >= start}
            changed = True
        self._next_roll = self._calendar.next_session(previous.close).close
        return changed

    # -- persistence ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The whole account (``engine.sim.store`` writes it when it compacts)."""
        return self._json(self.positions, self.quotes, self.opened, closed=[])

    def delta_json(self) -> dict[str, Any]:
        """The account as ``to_json`` shapes it, but only the positions, quotes and opening
        days that changed since the last ``saved()``; ``closed`` lists the positions gone
        since. ``engine.sim.store`` lays deltas over the last full state."""
        changed = self._unsaved_symbols
        return self._json(
            {s: self.positions[s] for s in changed if s in self.positions},
            self._unsaved_quotes,
            {s: self.opened[s] for s in changed if s in self.opened},
            closed=sorted(s for s in changed if s not in self.positions),
        )

    def saved(self) -> None:
        """What ``delta_json`` returned is on disk."""
        self._unsaved_quotes.clear()
        self._unsaved_symbols.clear()

    def _json(
        self,
        positions: dict[str, Position],
        quoted: Iterable[str],
        opened: dict[str, date],
        *,
        closed: list[str],
    ) -> dict[str, Any]:
        """``quoted``: the symbols whose quotes it writes."""
        quotes = self.quotes
        by_time: dict[datetime, dict[str, str]] = {}  # a minute's quotes share their time
        last_ts: datetime | None = None
        same_time: dict[str, str] = {}
        for symbol in quoted:
            price, ts = quotes[symbol]
            if ts is not last_ts:  # (mostly the one time object of the minute's bars)
                last_ts = ts
                same_time = by_time.setdefault(ts, {})
            same_time[symbol] = str(price)
        return {
            "starting_cash": str(self.starting_cash),
            "cash": str(self.cash),
            "last_equity": str(self.last_equity),
            "equity_close": self.equity_close.isoformat(),
            "positions": [
                {"symbol": p.symbol, "qty": str(p.qty), "avg_entry_price": str(p.avg_entry_price)}
                for p in positions.values()
            ],
            "closed": closed,
            "quotes_at": {ts.isoformat(): prices for ts, prices in by_time.items()},
            "daytrades": {d.isoformat(): n for d, n in self.daytrades.items()},
            "opened": {s: day.isoformat() for s, day in opened.items()},
        }

    def load_json(self, state: dict[str, Any]) -> None:
        """Restore what ``to_json`` wrote; raises KeyError/ValueError/TypeError when damaged.
        Day trades are ``{day: count}`` (a list of days in files before version 3); last
        quotes ``{time: {symbol: price}}`` (``{symbol: {price, ts}}`` in older files)."""
        self.starting_cash = Decimal(state["starting_cash"])
        self.cash = Decimal(state["cash"])
        self.last_equity = Decimal(state["last_equity"])
        self.equity_close = parse_utc(state["equity_close"])
        self.positions = {
            p["symbol"]: Position(p["symbol"], Decimal(p["qty"]), Decimal(p["avg_entry_price"]))
            for p in state["positions"]
        }
        if "quotes_at" in state:  # {time: {symbol: price}}
            self.quotes = {}
            for at, prices in state["quotes_at"].items():
                ts = parse_utc(at)
                self.quotes.update((s, Quote(Decimal(p), ts)) for s, p in prices.items())
        else:  # {symbol: {"price", "ts"}}, as files before the grouping wrote them
            self.quotes = {
                s: Quote(Decimal(q["price"]), parse_utc(q["ts"]))
                for s, q in state["quotes"].items()
            }
        daytrades = state["daytrades"]
        if isinstance(daytrades, dict):
            counts = {date.fromisoformat(d): int(n) for d, n in daytrades.items()}
        else:
            counts = dict(Counter(date.fromisoformat(d) for d in daytrades))
        self.daytrades = dict(sorted(counts.items()))
        self.opened = {s: date.fromisoformat(d) for s, d in state["opened"].items()}
        self._total()
        self.saved()
