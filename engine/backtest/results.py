"""What a backtest run produces: its fills, closed round trips, daily and intraday equity."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from engine.domain import ZERO, Fill, Side


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One execution, as the trades CSV lists it."""

    ts: datetime
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fees: Decimal
    strategy: str
    reason: str
    realized: Decimal
    """Gross P&L this execution realized (zero when it opened or added)."""
    client_order_id: str = ""


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A position from flat (or a flip) back to flat: what it made net of every fee."""

    symbol: str
    strategy: str
    opened_at: datetime
    closed_at: datetime
    pnl: Decimal
    """Realized P&L of its closing executions minus the fees of all its executions."""


@dataclass(frozen=True, slots=True)
class DayRow:
    """The account at a trading day's last bar."""

    day: date
    equity: Decimal
    cash: Decimal


@dataclass
class BacktestResult:
    starting_cash: Decimal
    trades: list[TradeRow] = field(default_factory=list)
    round_trips: list[RoundTrip] = field(default_factory=list)
    days: list[DayRow] = field(default_factory=list)
    curve: list[tuple[datetime, Decimal]] = field(default_factory=list)
    """Equity after each traded minute (at that minute's close)."""
    rejections: Counter[str] = field(default_factory=Counter)
    """Orders refused, by reason (the risk gate's reasons, or ``broker:<status>``)."""
    halts: list[str] = field(default_factory=list)
    """Each daily-loss-limit halt, as a sentence."""
    bars: int = 0
    """Bars read (warm-up history included)."""
    traded_bars: int = 0
    minutes: int = 0
    """Traded minutes (distinct bar times from the start of trading)."""
    minutes_in_market: int = 0
    """Traded minutes that ended with a position open."""
    paused: dict[str, str] = field(default_factory=dict)
    """Strategies paused after an error, with why."""
    elapsed_s: float = 0.0

    @property
    def final_equity(self) -> Decimal:
        if self.days:
            return self.days[-1].equity
        return self.curve[-1][1] if self.curve else self.starting_cash

    @property
    def fees(self) -> Decimal:
        return sum((t.fees for t in self.trades), ZERO)


class _Open:
    __slots__ = ("opened_at", "pnl", "strategy")

    def __init__(self, opened_at: datetime, strategy: str) -> None:
        self.opened_at = opened_at
        self.strategy = strategy
        self.pnl = ZERO


class RoundTrips:
    """Turns executions into round trips: one opens when a position leaves flat, and closes
    when it is flat again or flips (the flipping execution's fee stays with the trip it
    closes; the rest of it opens the next one)."""

    def __init__(self, closed: list[RoundTrip]) -> None:
        self.closed = closed
        self._open: dict[str, _Open] = {}

    def on_fill(
        self, fill: Fill, strategy: str, before: Decimal, after: Decimal, realized: Decimal
    ) -> None:
        """``before``/``after``: the symbol's signed position around ``fill``; ``realized``:
        the gross P&L it realized."""
        symbol = fill.symbol
        trip = self._open.get(symbol)
        if trip is None:
            trip = self._open[symbol] = _Open(fill.ts, strategy)
        trip.pnl += realized - fill.commission
        crossed = before != ZERO and (after == ZERO or (after > ZERO) != (before > ZERO))
        if not crossed:
            return
        self.closed.append(RoundTrip(symbol, trip.strategy, trip.opened_at, fill.ts, trip.pnl))
        del self._open[symbol]
        if after != ZERO:
            self._open[symbol] = _Open(fill.ts, strategy)
