from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import engine.domain
from engine.clock import NEW_YORK
from engine.domain import TimeText, ensure_utc
from engine.store.records import text_to_ts, ts_to_text

T0 = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def test_time_text_when_the_same_instant_comes_again_then_rendered_once_in_utc() -> None:
    rendered: list[datetime] = []

    def render(utc: datetime) -> str:
        rendered.append(utc)
        return utc.isoformat()

    text = TimeText(render)
    in_new_york = T0.astimezone(NEW_YORK)

    assert [text(T0), text(T0), text(in_new_york)] == ["2026-03-10T15:00:00+00:00"] * 3
    assert rendered == [T0]  # one render for one instant, whatever its zone
    assert rendered[0].tzinfo is UTC


def test_time_text_when_naive_then_refused_naming_the_field() -> None:
    text = TimeText(datetime.isoformat)
    text(T0)

    with pytest.raises(ValueError, match=r"order\.created_at: naive datetime"):
        text(T0.replace(tzinfo=None), field="order.created_at")


def test_time_text_when_more_times_than_it_keeps_then_it_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine.domain, "TIME_TEXTS", 3)
    rendered: list[datetime] = []
    text = TimeText(lambda utc: rendered.append(utc) or utc.isoformat())
    times = [T0 + timedelta(seconds=i) for i in range(4)]

    for ts in times + times[-1:]:
        text(ts)

    assert rendered == times  # the fourth cleared the three before it; the repeat is known
    assert len(text._known) == 1


def test_time_text_once_when_a_time_does_not_repeat_then_the_same_text_and_nothing_kept() -> None:
    text = TimeText(lambda utc: utc.isoformat(timespec="microseconds"))
    text(T0)

    assert text.once(T0.astimezone(NEW_YORK) + timedelta(microseconds=1)) == (
        "2026-03-10T15:00:00.000001+00:00"
    )
    assert list(text._known) == [T0]  # a wall clock's readings push nothing out
    with pytest.raises(ValueError, match=r"clock\.now\(\): naive datetime"):
        text.once(T0.replace(tzinfo=None), field="clock.now()")


def test_ts_to_text_when_any_zone_then_utc_with_six_fraction_digits_and_back() -> None:
    local = T0.astimezone(NEW_YORK)

    assert ts_to_text(local) == ts_to_text(T0) == "2026-03-10T15:00:00.000000+00:00"
    assert text_to_ts(ts_to_text(local)) == T0


def test_ensure_utc_when_already_utc_then_the_same_object() -> None:
    assert ensure_utc(T0) is T0
    assert ensure_utc(T0.astimezone(NEW_YORK)) == T0
