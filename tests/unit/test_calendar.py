from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.calendar import MarketCalendar, easter_sunday, nyse_early_closes, nyse_holidays
from engine.clock import NEW_YORK

# NYSE Group's published calendars (press releases of 2024-11-08 and 2025-12-23), plus the
# January 9, 2025 closure for President Carter's national day of mourning.
HOLIDAYS = {
    2025: [
        date(2025, 1, 1),
        date(2025, 1, 9),
        date(2025, 1, 20),
        date(2025, 2, 17),
        date(2025, 4, 18),
        date(2025, 5, 26),
        date(2025, 6, 19),
        date(2025, 7, 4),
        date(2025, 9, 1),
        date(2025, 11, 27),
        date(2025, 12, 25),
    ],
    2026: [
        date(2026, 1, 1),
        date(2026, 1, 19),
        date(2026, 2, 16),
        date(2026, 4, 3),
        date(2026, 5, 25),
        date(2026, 6, 19),
        date(2026, 7, 3),
        date(2026, 9, 7),
        date(2026, 11, 26),
        date(2026, 12, 25),
    ],
    2027: [
        date(2027, 1, 1),
        date(2027, 1, 18),
        date(2027, 2, 15),
        date(2027, 3, 26),
        date(2027, 5, 31),
        date(2027, 6, 18),
        date(2027, 7, 5),
        date(2027, 9, 6),
        date(2027, 11, 25),
        date(2027, 12, 24),
    ],
}
# 2028 from the 2025-12-23 release: New Year's Day falls on a Saturday and is not observed.
HOLIDAYS[2028] = [
    date(2028, 1, 17),
    date(2028, 2, 21),
    date(2028, 4, 14),
    date(2028, 5, 29),
    date(2028, 6, 19),
    date(2028, 7, 4),
    date(2028, 9, 4),
    date(2028, 11, 23),
    date(2028, 12, 25),
]
EARLY_CLOSES = {
    2025: [date(2025, 7, 3), date(2025, 11, 28), date(2025, 12, 24)],
    2026: [date(2026, 11, 27), date(2026, 12, 24)],
    2027: [date(2027, 11, 26)],
    2028: [date(2028, 7, 3), date(2028, 11, 24)],
}


def ny(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK).astimezone(UTC)


def weekdays(year: int) -> list[date]:
    day, found = date(year, 1, 1), []
    while day.year == year:
        if day.weekday() < 5:
            found.append(day)
        day += timedelta(days=1)
    return found


@pytest.fixture
def calendar() -> MarketCalendar:
    return MarketCalendar()


@pytest.mark.parametrize("year", [2025, 2026, 2027, 2028])
def test_sessions_when_year_listed_then_weekday_closures_match_nyse(
    calendar: MarketCalendar, year: int
) -> None:
    open_days = {s.day for s in calendar.sessions(date(year, 1, 1), date(year, 12, 31))}

    closed = [day for day in weekdays(year) if day not in open_days]

    assert closed == HOLIDAYS[year]


@pytest.mark.parametrize("year", [2025, 2026, 2027, 2028])
def test_sessions_when_year_listed_then_early_closes_match_nyse(
    calendar: MarketCalendar, year: int
) -> None:
    sessions = calendar.sessions(date(year, 1, 1), date(year, 12, 31))

    early = [s.day for s in sessions if s.early_close]

    assert early == EARLY_CLOSES[year]
    for session in sessions:
        local_close = session.close.astimezone(NEW_YORK)
        assert (local_close.hour, local_close.minute) == (
            (13, 0) if session.early_close else (16, 0)
        )


@pytest.mark.parametrize("year", [2025, 2026, 2027, 2028])
def test_rule_sets_when_year_listed_then_match_nyse_without_special_closures(year: int) -> None:
    expected_holidays = set(HOLIDAYS[year]) - {date(2025, 1, 9)}

    assert nyse_holidays(year) == expected_holidays
    assert nyse_early_closes(year) == set(EARLY_CLOSES[year])


def test_session_when_new_year_falls_on_saturday_then_friday_before_trades(
    calendar: MarketCalendar,
) -> None:
    assert calendar.session(date(2027, 12, 31)) is not None
    assert calendar.session(date(2021, 12, 31)) is not None


def test_session_when_summer_and_winter_then_open_is_0930_new_york_in_utc(
    calendar: MarketCalendar,
) -> None:
    winter = calendar.session(date(2026, 1, 6))
    summer = calendar.session(date(2026, 7, 7))

    assert winter is not None
    assert summer is not None
    assert winter.open == datetime(2026, 1, 6, 14, 30, tzinfo=UTC)
    assert winter.close == datetime(2026, 1, 6, 21, 0, tzinfo=UTC)
    assert summer.open == datetime(2026, 7, 7, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (2000, date(2000, 4, 23)),
        (2008, date(2008, 3, 23)),
        (2024, date(2024, 3, 31)),
        (2038, date(2038, 4, 25)),
        (2100, date(2100, 3, 28)),
    ],
)
def test_easter_sunday_when_known_year_then_matches_tables(year: int, expected: date) -> None:
    assert easter_sunday(year) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (ny(2026, 3, 10, 9, 29, 59), False),
        (ny(2026, 3, 10, 9, 30), True),
        (ny(2026, 3, 10, 15, 59, 59), True),
        (ny(2026, 3, 10, 16, 0), False),
        (ny(2025, 11, 28, 12, 59, 59), True),
        (ny(2025, 11, 28, 13, 0), False),
        (ny(2026, 3, 14, 12, 0), False),  # Saturday
        (ny(2026, 4, 3, 12, 0), False),  # Good Friday
    ],
)
def test_is_open_when_around_open_and_close_then_open_included_close_excluded(
    calendar: MarketCalendar, ts: datetime, expected: bool
) -> None:
    assert calendar.is_open(ts) is expected


def test_clock_when_friday_after_close_then_next_open_is_monday(calendar: MarketCalendar) -> None:
    clock = calendar.clock(ny(2026, 3, 13, 16, 30))

    assert clock.is_open is False
    assert clock.next_open == ny(2026, 3, 16, 9, 30)
    assert clock.next_close == ny(2026, 3, 16, 16, 0)


def test_clock_when_holiday_follows_then_next_open_skips_it(calendar: MarketCalendar) -> None:
    clock = calendar.clock(ny(2026, 4, 2, 17, 0))  # Thursday before Good Friday

    assert clock.next_open == ny(2026, 4, 6, 9, 30)
    assert clock.next_close == ny(2026, 4, 6, 16, 0)


def test_clock_when_open_then_next_close_today_and_next_open_tomorrow(
    calendar: MarketCalendar,
) -> None:
    clock = calendar.clock(ny(2025, 12, 24, 11, 0))

    assert clock.is_open is True
    assert clock.next_close == ny(2025, 12, 24, 13, 0)
    assert clock.next_open == ny(2025, 12, 26, 9, 30)


def test_clock_when_before_open_then_next_open_is_today(calendar: MarketCalendar) -> None:
    clock = calendar.clock(ny(2026, 3, 10, 8, 0))

    assert clock.is_open is False
    assert clock.next_open == ny(2026, 3, 10, 9, 30)
    assert clock.next_close == ny(2026, 3, 10, 16, 0)


def test_previous_session_when_monday_morning_then_friday(calendar: MarketCalendar) -> None:
    previous = calendar.previous_session(ny(2026, 3, 16, 10, 0))

    assert previous.day == date(2026, 3, 13)


def test_previous_session_when_exactly_at_close_then_that_session(
    calendar: MarketCalendar,
) -> None:
    assert calendar.previous_session(ny(2026, 3, 10, 16, 0)).day == date(2026, 3, 10)


def test_next_session_when_during_session_then_tomorrow(calendar: MarketCalendar) -> None:
    assert calendar.next_session(ny(2026, 3, 10, 12, 0)).day == date(2026, 3, 11)


def test_session_when_extra_closure_given_then_closed() -> None:
    calendar = MarketCalendar(extra_closures=[date(2026, 3, 11)])

    assert calendar.session(date(2026, 3, 11)) is None
    assert calendar.next_session(ny(2026, 3, 10, 17, 0)).day == date(2026, 3, 12)


def test_is_open_when_naive_datetime_then_refused(calendar: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        calendar.is_open(datetime(2026, 3, 10, 12, 0))


def test_session_when_juneteenth_before_2022_then_market_traded(calendar: MarketCalendar) -> None:
    assert calendar.session(date(2021, 6, 18)) is not None  # would be the observed Friday
    assert calendar.session(date(2022, 6, 20)) is None  # first observance, a Monday
