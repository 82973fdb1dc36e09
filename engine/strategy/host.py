"""The strategy host: turns a closed bar into an order request, synchronously.

It routes each bar to the one strategy that owns its symbol, keeps the warm-up count, calls
the lifecycle hooks, sizes what the strategy asks for, and pauses a strategy that raised
(the others keep trading). The engine's bar path drives it live and in the replay; the
backtest drives the same object over stored bars: one implementation.

Driving it, synchronously: build it from ``loader.load_strategies(slots)``; per symbol,
``warm_up(symbol, history, position)`` with ``warmup_bars(symbol)`` bars; then every bar in
time order through ``on_bar(bar, position, may_trade=...)``, whose ``OrderIntent`` gives the
order (``request()``) for the risk gate and the broker; each fill back through
``on_fill(fill, strategy)``; ``end_day()`` when the data ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.clock import TradingDays, trading_day
from engine.domain import ZERO, Bar, Fill, OrderRequest, Side
from engine.orders import make_client_order_id
from engine.strategy.base import Signal, Strategy
from engine.strategy.loader import StrategySpec

log = logging.getLogger(__name__)

PauseCallback = Callable[[str, str], None]
"""Called with the strategy's name and why it was paused."""


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A sized order a strategy asked for on the bar starting at ``ts``."""

    strategy: str
    symbol: str
    side: Side
    qty: Decimal
    ts: datetime
    reason: str

    def request(self) -> OrderRequest:
        """The order, with a ``client_order_id`` that is the same for the same signal, so a
        restart that sees the bar again cannot send it twice."""
        return OrderRequest(
            client_order_id=make_client_order_id(self.strategy, self.symbol, self.ts),
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            strategy=self.strategy,
        )


def size_order(side: Side, position: Decimal, order_qty: Decimal, long_only: bool) -> Decimal:
    """Shares to trade for a signal without its own quantity. ``BUY``: from flat, buy
    ``order_qty``; from short, cover and go long (long-only never trades a short it did not
    open). ``SELL``: from long, sell it all (long-only) or flip to short; from flat, open a
    short unless long-only. Already on that side: nothing."""
    if side is Side.BUY:
        if position > ZERO or (position < ZERO and long_only):
            return ZERO
        return order_qty - position
    if position < ZERO or (position == ZERO and long_only):
        return ZERO
    return position if long_only else position + order_qty


class _Seat:
    """One strategy instance trading one symbol."""

    __slots__ = ("day", "last_ts", "seen", "spec", "started", "strategy", "warmup")

    def __init__(self, spec: StrategySpec, symbol: str) -> None:
        self.spec = spec
        self.strategy: Strategy[Any] = spec.create(symbol)
        self.warmup = int(self.strategy.warmup_bars)
        self.seen = 0
        self.started = False
        self.day: date | None = None
        self.last_ts: datetime | None = None


class StrategyHost:
    def __init__(self, specs: Sequence[StrategySpec], on_pause: PauseCallback | None = None):
        self.specs = {spec.name: spec for spec in specs}
        if len(self.specs) != len(specs):
            raise ValueError("two strategies share a name")
        self.on_pause = on_pause
        self.paused: dict[str, str] = {}
        """Strategy name -> why it was paused."""
        self.late_bars = 0
        """Bars ignored because their symbol had already seen a bar as new or newer."""
        self._seats: dict[str, _Seat] = {}
        for spec in specs:
            for symbol in spec.symbols:
                if symbol in self._seats:
                    raise ValueError(f"{symbol} is claimed by two strategies")
                self._seats[symbol] = _Seat(spec, symbol)
        self._days = TradingDays()

    # ---- what it trades ----------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._seats)

    @property
    def owners(self) -> Mapping[str, str]:
        """Symbol -> the name of the strategy trading it."""
        return {symbol: seat.spec.name for symbol, seat in self._seats.items()}

    def owner(self, symbol: str) -> str | None:
        seat = self._seats.get(symbol)
        return None if seat is None else seat.spec.name

    def instance(self, symbol: str) -> Strategy[Any] | None:
        """The strategy object trading ``symbol`` (for inspection: tests, the backtest)."""
        seat = self._seats.get(symbol)
        return None if seat is None else seat.strategy

    def warmup_bars(self, symbol: str) -> int:
        """Bars of history ``symbol``'s strategy needs before it may trade."""
        seat = self._seats.get(symbol)
        return 0 if seat is None else seat.warmup

    # ---- driving it --------------------------------------------------------------------

    def warm_up(self, symbol: str, history: Sequence[Bar], position: Decimal = ZERO) -> None:
        """Start ``symbol``'s strategy on ``history`` (oldest first); signals ignored."""
        seat = self._seats.get(symbol)
        if seat is None or seat.started or seat.spec.name in self.paused:
            return
        seat.started = True
        bars = [b for b in history if seat.last_ts is None or b.ts > seat.last_ts]
        try:
            seat.strategy.on_start(bars, position)
        except Exception as exc:
            self._pause(seat, "on_start", exc)
            return
        seat.seen += len(bars)
        if bars:
            seat.last_ts = bars[-1].ts
            seat.day = trading_day(bars[-1].ts)

    def on_bar(self, bar: Bar, position: Decimal, *, may_trade: bool = True) -> OrderIntent | None:
        """Feed one closed bar; the order its strategy asks for, sized, or None. With
        ``may_trade`` False (an order already open, trading halted) the strategy still sees
        the bar, and what it asks for is dropped."""
        seat = self._seats.get(bar.symbol)
        if seat is None or seat.spec.name in self.paused:
            return None
        if seat.last_ts is not None and bar.ts <= seat.last_ts:
            self.late_bars += 1
            return None
        if not seat.started:
            self.warm_up(bar.symbol, (), position)
            if seat.spec.name in self.paused:
                return None
        seat.last_ts = bar.ts
        strategy = seat.strategy
        try:
            day = self._days.of(bar.ts)
            if seat.day != day:
                if seat.day is not None:
                    strategy.on_day_end(seat.day)
                strategy.on_day_start(day)
                seat.day = day
            signal = strategy.on_bar(bar, position)
            seat.seen += 1
            if signal is None or not may_trade or seat.seen < seat.warmup:
                return None
            return self._intent(seat, bar, signal, position)
        except Exception as exc:
            self._pause(seat, "on_bar", exc)
            return None

    def on_fill(self, fill: Fill, strategy: str) -> None:
        """A fill of an order placed by ``strategy``; its instance for the symbol hears it."""
        seat = self._seats.get(fill.symbol)
        if seat is None or seat.spec.name != strategy or strategy in self.paused:
            return
        try:
            seat.strategy.on_fill(fill)
        except Exception as exc:
            self._pause(seat, "on_fill", exc)

    def end_day(self) -> None:
        """The run (or the session) ends: every running strategy hears ``on_day_end``."""
        for seat in self._seats.values():
            if seat.day is None or seat.spec.name in self.paused:
                continue
            day, seat.day = seat.day, None
            try:
                seat.strategy.on_day_end(day)
            except Exception as exc:
                self._pause(seat, "on_day_end", exc)

    # ---- pausing -----------------------------------------------------------------------

    def resume(
        self,
        name: str,
        history: Mapping[str, Sequence[Bar]],
        positions: Mapping[str, Decimal],
    ) -> bool:
        """Re-enable a paused strategy with fresh instances warmed up on ``history`` (per
        symbol): the old ones' state is not trusted after an exception. False if it was
        not paused."""
        if self.paused.pop(name, None) is None:
            return False
        spec = self.specs[name]
        for symbol in spec.symbols:
            old = self._seats[symbol]
            seat = self._seats[symbol] = _Seat(spec, symbol)
            seat.last_ts = None if history.get(symbol) else old.last_ts
            self.warm_up(symbol, history.get(symbol, ()), positions.get(symbol, ZERO))
        return True

    def _pause(self, seat: _Seat, hook: str, exc: Exception) -> None:
        name = seat.spec.name
        log.error("strategy %s raised in %s(%s)", name, hook, seat.strategy.symbol, exc_info=exc)
        where = f"{hook} for {seat.strategy.symbol}"
        reason = f"{type(exc).__name__} in {where}: {' '.join(str(exc).split())}"[:300]
        self.paused[name] = reason
        if self.on_pause is not None:
            self.on_pause(name, reason)

    # ---- internals ---------------------------------------------------------------------

    @staticmethod
    def _intent(seat: _Seat, bar: Bar, signal: Signal, position: Decimal) -> OrderIntent | None:
        spec = seat.spec
        if not isinstance(signal, Signal) or not isinstance(signal.side, Side):
            raise TypeError(f"on_bar must return a Signal or None, not {signal!r}")
        if signal.qty is None:
            qty = size_order(signal.side, position, spec.order_qty, spec.long_only)
        else:
            qty = signal.qty
            if not isinstance(qty, Decimal) or not qty.is_finite() or qty <= ZERO:
                raise ValueError(f"Signal.qty must be a positive Decimal, not {qty!r}")
            if spec.long_only and signal.side is Side.SELL:
                qty = min(qty, max(position, ZERO))  # long-only never sells into a short
        if qty <= ZERO:
            return None
        return OrderIntent(spec.name, bar.symbol, signal.side, qty, bar.ts, signal.reason)
