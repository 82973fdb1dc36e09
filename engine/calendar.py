"""NYSE regular sessions computed from the exchange's published rules (NYSE Rule 7.2).

Regular hours are 09:30-16:00 America/New_York; early closes are at 13:00. The rules hold for
2000-2100: full holidays with NYSE's weekend observance (Saturday -> Friday before, Sunday ->
Monday after, except that a Saturday New Year's Day is not observed at all), Good Friday from
the Gregorian Easter computus, Juneteenth from 2022, and the three usual half days. One-off
closures (national days of mourning, storms) cannot be derived from rules: the known ones are
listed in ``SPECIAL_CLOSURES`` and more can be passed to the constructor.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

from engine.clock import NEW_YORK, TradingDays, trading_day
from engine.domain import MarketClock, TradingSession, ensure_utc

REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)

# Unscheduled full-day closures since 2000 (NYSE announcements).
SPECIAL_CLOSURES: frozenset[date] = frozenset(
    {
        date(2001, 9, 11),  # September 11 attacks, closed through the 14th
        date(2001, 9, 12),
        date(2001, 9, 13),
        date(2001, 9, 14),
        date(2004, 6, 11),  # President Reagan's national day of mourning
        date(2007, 1, 2),  # President Ford's national day of mourning
        date(2012, 10, 29),  # Hurricane Sandy
        date(2012, 10, 30),
        date(2018, 12, 5),  # President G. H. W. Bush's national day of mourning
        date(2025, 1, 9),  # President Carter's national day of mourning
    }
)

# A gap between sessions is never longer than this (the 2001 closure plus weekends is 6 days).
_MAX_GAP_DAYS = 15


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Meeus/Jones/Butcher algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    j = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * j) // 451
    month, day = divmod(h + j - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    next_month = date(year + month // 12, month % 12 + 1, 1)
    last = next_month - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Saturday holidays are observed the Friday before, Sunday holidays the Monday after."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=256)
def nyse_holidays(year: int) -> frozenset[date]:
    """Full-day rule-based holidays observed in ``year`` (special closures not included)."""
    monday, thursday = 0, 3
    days = {
        _nth_weekday(year, 1, monday, 3),  # Martin Luther King, Jr. Day
        _nth_weekday(year, 2, monday, 3),  # Washington's Birthday
        easter_sunday(year) - timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, monday),  # Memorial Day
        _observed(date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, monday, 1),  # Labor Day
        _nth_weekday(year, 11, thursday, 4),  # Thanksgiving Day
        _observed(date(year, 12, 25)),  # Christmas Day
    }
    new_year = date(year, 1, 1)
    # A Saturday New Year's Day would fall back to December 31, the last day of the
    # accounting year, so NYSE does not observe it at all.
    if new_year.weekday() != 5:
        days.add(_observed(new_year))
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth National Independence Day
    return frozenset(days)


@lru_cache(maxsize=256)
def nyse_early_closes(year: int) -> frozenset[date]:
    """13:00 closes: the day after Thanksgiving, and July 3 and December 24 when they are
    weekdays that are not themselves the observed holiday (as on a Friday)."""
    days = {_nth_weekday(year, 11, 3, 4) + timedelta(days=1)}
    for eve in (date(year, 7, 3), date(year, 12, 24)):
        if eve.weekday() < 5 and eve not in nyse_holidays(year):
            days.add(eve)
    return frozenset(days)


def is_holiday(day: date) -> bool:
    """True on a rule-based full holiday (an observed date may fall in the year before)."""
    return day in nyse_holidays(day.year) or (
        day.month == 12 and day in nyse_holidays(day.year + 1)
    )


def _at(day: date, local: time) -> datetime:
    return datetime.combine(day, local, tzinfo=NEW_YORK).astimezone(UTC)


class MarketCalendar:
    """Regular trading sessions of the NYSE; every datetime in and out is aware UTC."""

    def __init__(self, *, extra_closures: Iterable[date] = ()) -> None:
        self._closures = SPECIAL_CLOSURES | frozenset(extra_closures)
        self._cache: dict[date, TradingSession | None] = {}
        self._days = TradingDays()  # is_open is asked once per bar: one zone change a day

    def session(self, day: date) -> TradingSession | None:
        """The session on exchange-local date ``day``, or None when the market is closed."""
        if day in self._cache:
            return self._cache[day]
        result: TradingSession | None = None
        if day.weekday() < 5 and not is_holiday(day) and day not in self._closures:
            early = day in nyse_early_closes(day.year)
            result = TradingSession(
                day=day,
                open=_at(day, REGULAR_OPEN),
                close=_at(day, EARLY_CLOSE if early else REGULAR_CLOSE),
                early_close=early,
            )
        if len(self._cache) > 20_000:
            self._cache.clear()
        self._cache[day] = result
        return result

    def sessions(self, start: date, end: date) -> list[TradingSession]:
        """Every session from ``start`` to ``end``, both included."""
        found: list[TradingSession] = []
        day = start
        while day <= end:
            session = self.session(day)
            if session is not None:
                found.append(session)
            day += timedelta(days=1)
        return found

    def is_open(self, ts: datetime) -> bool:
        """True inside a regular session; the open is included, the close is not."""
        ts = ensure_utc(ts)
        session = self.session(self._days.of(ts))
        return session is not None and session.open <= ts < session.close

    def next_session(self, after: datetime) -> TradingSession:
        """The first session that opens strictly after ``after``."""
        after = ensure_utc(after)
        day = trading_day(after)
        for _ in range(_MAX_GAP_DAYS):
            session = self.session(day)
            if session is not None and session.open > after:
                return session
            day += timedelta(days=1)
        raise ValueError(f"no session within {_MAX_GAP_DAYS} days after {after.isoformat()}")

    def previous_session(self, before: datetime) -> TradingSession:
        """The last session that had closed at or before ``before``."""
        before = ensure_utc(before)
        day = trading_day(before)
        for _ in range(_MAX_GAP_DAYS):
            session = self.session(day)
            if session is not None and session.close <= before:
                return session
            day -= timedelta(days=1)
        raise ValueError(f"no session within {_MAX_GAP_DAYS} days before {before.isoformat()}")

    def clock(self, ts: datetime) -> MarketClock:
        """Like Alpaca's ``/v2/clock``: while open, ``next_open`` is the next session's open
        and ``next_close`` today's close; while closed, both belong to the next session."""
        ts = ensure_utc(ts)
        upcoming = self.next_session(ts)
        today = self.session(trading_day(ts))
        if today is not None and today.open <= ts < today.close:
            return MarketClock(ts=ts, is_open=True, next_open=upcoming.open, next_close=today.close)
        return MarketClock(ts=ts, is_open=False, next_open=upcoming.open, next_close=upcoming.close)

    def trading_session_at(self, ts: datetime) -> TradingSession:
        """The session an order placed at ``ts`` trades in: today's while open, else the next."""
        ts = ensure_utc(ts)
        today = self.session(trading_day(ts))
        if today is not None and today.open <= ts < today.close:
            return today
        return self.next_session(ts)
