"""Running indicators: O(1) per bar, whatever the history length.

Exact ``Decimal`` arithmetic, so a signal never depends on the order floats were summed in
and a test can state the expected value to the last digit.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, date, datetime, time
from decimal import Decimal

from engine.clock import NEW_YORK, TradingDays
from engine.domain import ZERO, Bar

HUNDRED = Decimal(100)
THREE = Decimal(3)


class RollingMean:
    """The mean of the last ``length`` values, kept as a running sum."""

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError("length must be at least 1")
        self.length = length
        self.sum = ZERO
        self._window: deque[Decimal] = deque(maxlen=length)

    @property
    def ready(self) -> bool:
        return len(self._window) == self.length

    @property
    def value(self) -> Decimal:
        """The mean; only meaningful once ``ready``."""
        return self.sum / len(self._window) if self._window else ZERO

    def add(self, value: Decimal) -> None:
        window = self._window
        if len(window) == self.length:
            self.sum += value - window[0]  # append drops window[0]
        else:
            self.sum += value
        window.append(value)


class RSI:
    """Wilder's relative strength index of closes over ``period`` changes: the first
    average is the simple mean of ``period`` gains (losses), then each new one is
    ``(previous * (period - 1) + change) / period``. Ready after ``period + 1`` closes."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError("period must be at least 1")
        self.period = period
        self._n = Decimal(period)
        self._last: Decimal | None = None
        self._changes = 0
        self._gain = ZERO
        self._loss = ZERO

    @property
    def ready(self) -> bool:
        return self._changes >= self.period

    @property
    def value(self) -> Decimal:
        """0..100; 50 when prices have not moved at all, 100 when they only rose."""
        if self._loss == ZERO:
            return Decimal(50) if self._gain == ZERO else HUNDRED
        return HUNDRED - HUNDRED / (1 + self._gain / self._loss)

    def add(self, close: Decimal) -> None:
        last, self._last = self._last, close
        if last is None:
            return
        change = close - last
        gain = change if change > ZERO else ZERO
        loss = -change if change < ZERO else ZERO
        self._changes += 1
        if self._changes <= self.period:
            # Seed: accumulate the sums, divide once the first period is complete.
            self._gain += gain
            self._loss += loss
            if self._changes == self.period:
                self._gain /= self._n
                self._loss /= self._n
            return
        self._gain = (self._gain * (self._n - 1) + gain) / self._n
        self._loss = (self._loss * (self._n - 1) + loss) / self._n


class SessionVWAP:
    """Volume-weighted average of the typical price ``(high + low + close) / 3`` since the
    session opened: it starts again at ``session_open`` (New York time) each trading day,
    and bars before the open of their day are not part of it."""

    def __init__(self, session_open: time = time(9, 30)) -> None:
        self.session_open = session_open
        self._days = TradingDays()
        self._day: date | None = None
        self._open_at = datetime.max.replace(tzinfo=UTC)
        self._pv = ZERO
        self._volume = ZERO

    @property
    def ready(self) -> bool:
        return self._volume > ZERO

    @property
    def value(self) -> Decimal:
        return self._pv / self._volume if self._volume else ZERO

    def in_session(self, bar: Bar) -> bool:
        """Whether ``bar`` counts toward the current session."""
        return self._days.of(bar.ts) == self._day and bar.ts >= self._open_at

    def add(self, bar: Bar) -> None:
        day = self._days.of(bar.ts)
        if day != self._day:
            self._day = day
            # In UTC, like bar times: comparing datetimes of one zone is the cheap comparison.
            self._open_at = datetime.combine(day, self.session_open, NEW_YORK).astimezone(UTC)
            self._pv = self._volume = ZERO
        if bar.ts < self._open_at:
            return  # before the open: not part of the session
        typical = (bar.high + bar.low + bar.close) / THREE
        self._pv += typical * bar.volume
        self._volume += bar.volume
