"""Injected clocks: the same engine code runs on wall time, on replayed data and in tests.

``now()`` is aware UTC and is what market logic uses (signal times, market hours, trading
day). ``monotonic()`` is for durations (latency, uptime, loop lag) and never jumps.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from engine.domain import ensure_utc

NEW_YORK = ZoneInfo("America/New_York")


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


def trading_day(ts: datetime) -> date:
    """The exchange-local calendar date of ``ts`` (America/New_York)."""
    return ensure_utc(ts).astimezone(NEW_YORK).date()


def et_minute(ts: datetime) -> str:
    """``ts`` as the trader reads it, in exchange time: ``Fri Nov 20 09:30 ET``."""
    return ensure_utc(ts).astimezone(NEW_YORK).strftime("%a %b %d %H:%M ET")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class TestClock:
    """A clock that only moves when told to. ``monotonic`` moves with ``now``."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, ts: datetime) -> None:
        new = ensure_utc(ts)
        if new < self._now:
            raise ValueError("TestClock cannot go backwards")
        self._mono += (new - self._now).total_seconds()
        self._now = new


class ReplayClock:
    """Market time follows the replayed data; durations stay on the wall clock.

    The replay feed calls ``set`` with each bar's close time, so market-hours checks, signal
    times and order timestamps are those of the data being replayed.
    """

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic()

    def set(self, ts: datetime) -> None:
        new = ensure_utc(ts)
        if new > self._now:
            self._now = new


class TradingDays:
    """``trading_day`` for times that arrive in order (bars): one zone conversion per day,
    then a comparison of two UTC datetimes per call."""

    def __init__(self) -> None:
        self.day: date | None = None
        self.starts_at = self.ends_at = datetime.min.replace(tzinfo=UTC)
        """The current day as ``[starts_at, ends_at)`` in UTC."""

    def of(self, ts: datetime) -> date:
        if not self.starts_at <= ts < self.ends_at or self.day is None:
            day = self.day = trading_day(ts)
            midnight = datetime.min.time()
            self.starts_at = datetime.combine(day, midnight, NEW_YORK).astimezone(UTC)
            next_day = datetime.combine(day + timedelta(days=1), midnight, NEW_YORK)
            self.ends_at = next_day.astimezone(UTC)
        return self.day
