"""Per-trading-day counters the risk gate needs: orders sent and day trades."""

from __future__ import annotations

from datetime import date

from engine.market_hours import MarketHours


class DayTracker:
    def __init__(self, market: MarketHours) -> None:
        self._market = market
        self.day: date | None = None
        self.orders_today = 0
        self.broker_day_trades = 0
        """The broker's own count of day trades in the last five days, when it reports one."""
        self._day_trades: dict[date, int] = {}
        self._counted_orders: set[str] = set()
        self._window: tuple[date | None, tuple[date, ...]] = (None, ())
        """The day the five-day window was found for, and its trading days."""

    def start(self, day: date, orders_today: int = 0) -> None:
        self.day = day
        self.orders_today = orders_today
        self._counted_orders.clear()
        self._window = (None, ())  # the calendar may have been read again for the new day

    def load_day_trades(self, counts: dict[date, int]) -> None:
        self._day_trades.update(counts)

    def record_day_trade(self, day: date, client_order_id: str) -> int:
        """Count a day trade once per closing order; returns the day's count."""
        if client_order_id not in self._counted_orders:
            self._counted_orders.add(client_order_id)
            self._day_trades[day] = self._day_trades.get(day, 0) + 1
        return self._day_trades.get(day, 0)

    def day_trades_5d(self) -> int:
        """Day trades in the last five trading days, including today."""
        if self.day is None:
            return self.broker_day_trades
        if self._window[0] != self.day:  # asked on every order: the window once per day
            days = [s.day for s in self._market.sessions if s.day <= self.day][-5:]
            self._window = (self.day, tuple(days))
        local = sum(self._day_trades.get(d, 0) for d in self._window[1])
        return max(local, self.broker_day_trades)
