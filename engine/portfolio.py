"""Positions, cash and P&L under average-cost accounting.

Pure synchronous bookkeeping: fills and marks go in, positions, equity and P&L come out.
Everything is ``Decimal``. Cash moves as the broker settles it (each execution's notional
rounded half-up to the cent, ``engine.domain.settlement``), so it matches the broker's to the
cent; nothing else is rounded here (prices, average costs and P&L keep the context's 28
significant digits) and display rounds once (``engine.domain.money``).

Equity, gross and net exposure are running totals, moved by each mark and each fill by the
change in that one position's market value, so reading them costs the same at 1 position or
2,000 (the loss-limit check reads them on every trade update and every tick of a held symbol).
The totals are kept in a wide Decimal context, so they equal the sum over the positions
exactly, however many updates they have seen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

from engine.clock import trading_day
from engine.domain import ZERO, Exposure, Fill, Side, ensure_utc, settlement


@dataclass(slots=True)
class PositionState:
    """One symbol's position and its lifetime history. ``qty`` is signed (negative = short)."""

    symbol: str
    qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    commissions: Decimal = ZERO
    last_price: Decimal | None = None
    opened_at: datetime | None = None

    @property
    def mark_price(self) -> Decimal:
        """The price it is valued at: the last one, or its cost until a price is known."""
        return self.avg_price if self.last_price is None else self.last_price

    @property
    def market_value(self) -> Decimal:
        """``qty * mark_price``."""
        return self.qty * self.mark_price

    @property
    def unrealized_pnl(self) -> Decimal:
        if self.last_price is None:
            return ZERO
        return (self.last_price - self.avg_price) * self.qty

    @property
    def is_flat(self) -> bool:
        return self.qty == ZERO


@dataclass(frozen=True, slots=True)
class SymbolPnL:
    """One row of the per-symbol P&L breakdown."""

    symbol: str
    qty: Decimal
    avg_price: Decimal
    last_price: Decimal | None
    market_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    day_realized_pnl: Decimal
    commissions: Decimal


@dataclass(frozen=True, slots=True)
class PnLSummary:
    """The whole book at one moment. Realized figures are gross of commissions."""

    realized: Decimal
    day_realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    day_commissions: Decimal
    equity: Decimal
    day_start_equity: Decimal | None
    day_pnl: Decimal | None
    gross_exposure: Decimal
    net_exposure: Decimal
    by_symbol: list[SymbolPnL]


def _by_size(state: PositionState) -> tuple[Decimal, str]:
    return (-abs(state.market_value), state.symbol)


def _require_positive(value: Decimal, field: str) -> None:
    if not value.is_finite() or value <= ZERO:
        raise ValueError(f"{field} must be a positive number, got {value}")


def check_fill(fill: Fill) -> datetime:
    """Raise ``ValueError`` for a fill no book can take (a non-positive or non-finite quantity
    or price, a negative or non-finite commission, a naive timestamp); its time as aware UTC."""
    _require_positive(fill.qty, "fill qty")
    _require_positive(fill.price, "fill price")
    if not fill.commission.is_finite() or fill.commission < ZERO:
        raise ValueError(f"fill commission must be zero or more, got {fill.commission}")
    return ensure_utc(fill.ts, field="fill ts")


class Portfolio:
    """Cash, positions and P&L of one account.

    ``start_day`` opens a trading day: fills whose exchange-local date is that day count toward
    the day's realized P&L and commissions. Before the first ``start_day`` no fill counts.
    """

    def __init__(self, cash: Decimal = ZERO) -> None:
        self.cash = cash
        self.day: date | None = None
        self.day_start_equity: Decimal | None = None
        self._positions: dict[str, PositionState] = {}
        self._last: dict[str, Decimal] = {}
        self._exposure = Exposure()
        self._fills_cash = ZERO
        # Per symbol, only for fills of ``self.day``; a key here means the symbol traded today.
        self._day_realized: dict[str, Decimal] = {}
        self._day_commissions: dict[str, Decimal] = {}

    # -- day -------------------------------------------------------------------------------

    def start_day(self, day: date, starting_equity: Decimal) -> None:
        """Begin ``day`` (an ``engine.clock.trading_day`` date) and reset the day counters."""
        self.day = day
        self.day_start_equity = starting_equity
        self._day_realized.clear()
        self._day_commissions.clear()

    # -- fills and prices ------------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> Decimal:
        """Book ``fill``; return the realized P&L it produced (gross, zero when opening/adding).

        Raises ``ValueError`` (and changes nothing) for a fill ``check_fill`` refuses.
        """
        ts = check_fill(fill)

        state = self._state(fill.symbol)
        before = state.market_value
        realized = self._book(state, fill.signed_qty, fill.price, ts)
        state.realized_pnl += realized
        state.commissions += fill.commission
        # Cash moves as the broker settles it: each execution's notional to the cent.
        moved = fill.side.sign * settlement(fill.qty, fill.price) + fill.commission
        self.cash -= moved
        self._fills_cash -= moved
        self._set_last(fill.symbol, fill.price, before)

        if self.day is not None and trading_day(ts) == self.day:
            symbol = fill.symbol
            self._day_realized[symbol] = self._day_realized.get(symbol, ZERO) + realized
            self._day_commissions[symbol] = (
                self._day_commissions.get(symbol, ZERO) + fill.commission
            )
        return realized

    @staticmethod
    def _book(state: PositionState, delta: Decimal, price: Decimal, ts: datetime) -> Decimal:
        old = state.qty
        new = old + delta
        if old == ZERO or (old > ZERO) == (delta > ZERO):
            # Opening or adding in the same direction: re-average, nothing realized.
            state.avg_price = (old * state.avg_price + delta * price) / new
            if old == ZERO:
                state.opened_at = ts
            state.qty = new
            return ZERO

        closed = min(abs(delta), abs(old))
        direction = 1 if old > ZERO else -1
        realized = (price - state.avg_price) * closed * direction
        state.qty = new
        if new == ZERO:
            state.avg_price = ZERO
            state.opened_at = None
        elif (new > ZERO) != (old > ZERO):
            # Crossed zero: the remainder is a fresh position opened by this fill.
            state.avg_price = price
            state.opened_at = ts
        return realized

    def mark(self, symbol: str, price: Decimal) -> None:
        """Record the last traded price of ``symbol`` (with or without a position)."""
        if not price.is_finite() or price <= ZERO:  # (the message is built only then)
            _require_positive(price, f"{symbol} price")
        self._set_last(symbol, price, None)

    def last_price(self, symbol: str) -> Decimal | None:
        return self._last.get(symbol)

    # -- positions -------------------------------------------------------------------------

    def position(self, symbol: str) -> PositionState | None:
        """A copy of the symbol's state (flat ones included, for their history); None if unseen."""
        state = self._positions.get(symbol)
        return None if state is None else replace(state)

    def qty(self, symbol: str) -> Decimal:
        state = self._positions.get(symbol)
        return ZERO if state is None else state.qty

    def opened_at(self, symbol: str) -> datetime | None:
        """When the symbol's open position was opened; None when flat or unseen."""
        state = self._positions.get(symbol)
        return None if state is None or state.qty == ZERO else state.opened_at

    def positions(self) -> list[PositionState]:
        """Copies of the open positions, largest absolute market value first."""
        open_ = [replace(s) for s in self._positions.values() if not s.is_flat]
        return sorted(open_, key=_by_size)

    def set_position(
        self,
        symbol: str,
        qty: Decimal,
        avg_price: Decimal,
        *,
        opened_at: datetime | None = None,
    ) -> None:
        """Overwrite a position with the broker's view; realized and commission history stay.

        ``opened_at`` defaults to the current one when the direction is unchanged, else None
        (a position of unknown age, e.g. carried overnight). ``qty`` 0 makes the symbol flat.
        Cash is not touched: reconcile it with ``set_cash``.
        """
        if not qty.is_finite():
            raise ValueError(f"{symbol} qty must be a finite number, got {qty}")
        if not avg_price.is_finite() or avg_price < ZERO:
            raise ValueError(f"{symbol} avg price must be zero or more, got {avg_price}")
        state = self._state(symbol)
        before = state.market_value
        if qty == ZERO:
            state.qty, state.avg_price, state.opened_at = ZERO, ZERO, None
        else:
            same_direction = state.qty != ZERO and (state.qty > ZERO) == (qty > ZERO)
            if opened_at is not None:
                state.opened_at = ensure_utc(opened_at, field="opened_at")
            elif not same_direction:
                state.opened_at = None
            state.qty, state.avg_price = qty, avg_price
        self._exposure.revalued(before, state.market_value)

    def set_cash(self, cash: Decimal) -> None:
        if not cash.is_finite():
            raise ValueError(f"cash must be a finite number, got {cash}")
        self.cash = cash

    @property
    def cash_base(self) -> Decimal:
        """The cash the fills booked here do not explain: deposits, withdrawals and every
        correction adopted from the broker. Journaled, so a restart can tell drift from
        deposits."""
        return self.cash - self._fills_cash

    def set_cash_base(self, base: Decimal) -> None:
        """Cash becomes ``base`` plus what the fills booked here moved (a restart's journal)."""
        self.set_cash(base + self._fills_cash)

    def projected_position(self, symbol: str, side: Side, qty: Decimal) -> Decimal:
        """The signed quantity ``symbol`` would have after a fill of ``qty`` on ``side``."""
        if not qty.is_finite() or qty < ZERO:
            raise ValueError(f"qty must be zero or more, got {qty}")
        return self.qty(symbol) + qty * side.sign

    # -- valuation -------------------------------------------------------------------------

    @property
    def equity(self) -> Decimal:
        return self.cash + self.net_exposure

    @property
    def gross_exposure(self) -> Decimal:
        """Sum of ``|market value|`` over the positions (a running total)."""
        return self._exposure.gross

    @property
    def net_exposure(self) -> Decimal:
        """Sum of market values over the positions (a running total)."""
        return self._exposure.net

    @property
    def day_pnl(self) -> Decimal | None:
        """Equity against the day's starting equity; None until a day is started."""
        if self.day_start_equity is None:
            return None
        return self.equity - self.day_start_equity

    def summary(self) -> PnLSummary:
        """Totals plus one row per open position or symbol traded today, largest first."""
        states = self._positions.values()
        rows = sorted(
            (s for s in states if not s.is_flat or s.symbol in self._day_realized),
            key=_by_size,
        )
        equity = self.equity
        return PnLSummary(
            realized=sum((s.realized_pnl for s in states), ZERO),
            day_realized=sum(self._day_realized.values(), ZERO),
            unrealized=sum((s.unrealized_pnl for s in states), ZERO),
            commissions=sum((s.commissions for s in states), ZERO),
            day_commissions=sum(self._day_commissions.values(), ZERO),
            equity=equity,
            day_start_equity=self.day_start_equity,
            day_pnl=self.day_pnl,
            gross_exposure=self.gross_exposure,
            net_exposure=self.net_exposure,
            by_symbol=[
                SymbolPnL(
                    symbol=s.symbol,
                    qty=s.qty,
                    avg_price=s.avg_price,
                    last_price=s.last_price,
                    market_value=s.market_value,
                    unrealized_pnl=s.unrealized_pnl,
                    realized_pnl=s.realized_pnl,
                    day_realized_pnl=self._day_realized.get(s.symbol, ZERO),
                    commissions=s.commissions,
                )
                for s in rows
            ],
        )

    # -- internals -------------------------------------------------------------------------

    def _state(self, symbol: str) -> PositionState:
        state = self._positions.get(symbol)
        if state is None:
            state = PositionState(symbol=symbol, last_price=self._last.get(symbol))
            self._positions[symbol] = state
        return state

    def _set_last(self, symbol: str, price: Decimal, before: Decimal | None) -> None:
        """New last price; ``before`` is the position's market value before the change that
        comes with it (a fill), None to take it now (a mark alone)."""
        self._last[symbol] = price
        state = self._positions.get(symbol)
        if state is None:
            return
        if before is not None:
            state.last_price = price
            self._exposure.revalued(before, state.market_value)
            return
        old = state.mark_price
        state.last_price = price
        self._exposure.marked(state.qty, old, price)  # a mark alone: once per bar held
