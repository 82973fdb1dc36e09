"""The dead-man's switch: stale data and a silent engine move trading to REDUCING."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.bus import EventBus
from engine.clock import TestClock
from engine.domain import TradingState
from engine.events import Notice, Severity
from engine.feed.base import FeedHealth
from engine.risk.state import Cause, TradingStateController
from engine.watchdog import Watchdog, check_interval

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 10:00 New York, market open


class MemoryStateStore:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    async def record_trading_state(self, *args: Any) -> None:
        self.rows.append(args)


class Rig:
    """A watchdog over a real state controller, a feed health and a settable beat."""

    def __init__(self, *, stale_data_s: float = 120, engine_stale_s: float = 60) -> None:
        self.clock = TestClock(T0)
        self.bus = EventBus()
        self.notices: list[Notice] = []
        self.bus.subscribe(Notice, self.notices.append)
        self.state = TradingStateController(self.bus, self.clock, MemoryStateStore())
        self.feed = FeedHealth(connected=True, last_message_mono=self.clock.monotonic())
        self.open = True
        self.beat: float | None = self.clock.monotonic()
        self.watchdog = Watchdog(
            state=self.state,
            bus=self.bus,
            clock=self.clock,
            feed=self.feed,
            market_open=lambda ts: self.open,
            last_beat=lambda: self.beat,
            stale_data_s=stale_data_s,
            engine_stale_s=engine_stale_s,
        )

    def data_arrives(self) -> None:
        self.feed.last_message_mono = self.clock.monotonic()

    def engine_beats(self) -> None:
        self.beat = self.clock.monotonic()


async def test_check_when_data_stale_in_market_hours_then_critical_and_reducing() -> None:
    rig = Rig()
    await rig.watchdog.check()
    rig.clock.advance(119)
    rig.engine_beats()
    quiet = await rig.watchdog.check()
    rig.clock.advance(2)
    rig.engine_beats()

    status = await rig.watchdog.check()

    assert quiet.tripped == frozenset()
    assert status.tripped == {Cause.STALE_DATA.value}
    assert status.data_age_s == 121
    record = rig.state.record
    assert (record.state, record.actor, record.cause) == (
        TradingState.REDUCING,
        "watchdog",
        "stale_data",
    )
    assert [n.severity for n in rig.notices] == [Severity.CRITICAL]
    assert rig.notices[0].kind == "watchdog"
    assert rig.notices[0].text.startswith("🚨 Market data stale: nothing for 121 s")
    assert "moves to REDUCING" in rig.notices[0].text


async def test_check_when_engine_stops_beating_then_critical_and_reducing() -> None:
    rig = Rig(engine_stale_s=60)
    await rig.watchdog.check()
    rig.clock.advance(61)
    rig.data_arrives()

    status = await rig.watchdog.check()

    assert status.tripped == {Cause.ENGINE_STALE.value}
    assert status.beat_age_s == 61
    assert (rig.state.state, rig.state.record.cause) == (TradingState.REDUCING, "engine_stale")
    assert rig.notices[0].severity is Severity.CRITICAL
    assert "engine stopped beating" in rig.notices[0].text.lower()


async def test_check_when_halted_then_alerts_but_stays_halted() -> None:
    rig = Rig()
    await rig.state.halt("trader", "lunch")
    await rig.watchdog.check()
    rig.clock.advance(200)
    rig.engine_beats()

    await rig.watchdog.check()

    assert rig.state.state is TradingState.HALTED
    assert rig.state.record.actor == "trader"
    assert rig.notices[0].severity is Severity.CRITICAL
    assert rig.notices[0].text.endswith("Trading stays HALTED.")


async def test_check_when_data_flows_again_then_info_and_active() -> None:
    rig = Rig()
    await rig.watchdog.check()
    rig.clock.advance(150)
    rig.engine_beats()
    await rig.watchdog.check()
    rig.clock.advance(10)
    rig.data_arrives()
    rig.engine_beats()

    status = await rig.watchdog.check()

    assert status.tripped == frozenset()
    assert rig.state.state is TradingState.ACTIVE
    assert rig.state.record.actor == "watchdog"
    assert [n.severity for n in rig.notices] == [Severity.CRITICAL, Severity.INFO]
    assert rig.notices[1].text == "✅ Market data is flowing again. Trading is back to ACTIVE."


async def test_check_when_person_took_over_reducing_then_recovery_keeps_it() -> None:
    rig = Rig()
    await rig.watchdog.check()
    rig.clock.advance(150)
    rig.engine_beats()
    await rig.watchdog.check()
    await rig.state.reduce("trader", "I'll watch it myself", cause=Cause.MANUAL)
    rig.clock.advance(10)
    rig.data_arrives()

    await rig.watchdog.check()

    assert (rig.state.state, rig.state.record.actor) == (TradingState.REDUCING, "trader")
    assert rig.notices[-1].text == "✅ Market data is flowing again."


async def test_check_when_both_tripped_then_active_only_after_both_recover() -> None:
    rig = Rig(stale_data_s=120, engine_stale_s=60)
    await rig.watchdog.check()
    rig.clock.advance(130)
    await rig.watchdog.check()
    assert rig.watchdog.tripped == {"stale_data", "engine_stale"}
    rig.clock.advance(5)
    rig.data_arrives()

    await rig.watchdog.check()
    still = rig.state.state
    rig.clock.advance(5)
    rig.engine_beats()
    await rig.watchdog.check()

    assert still is TradingState.REDUCING
    assert rig.state.state is TradingState.ACTIVE


async def test_check_when_replay_finished_then_never_stale() -> None:
    rig = Rig()
    rig.feed.finished = True
    await rig.watchdog.check()
    rig.clock.advance(10_000)
    rig.engine_beats()

    status = await rig.watchdog.check()

    assert status.tripped == frozenset()
    assert status.data_age_s is None
    assert rig.notices == []


async def test_check_when_market_closed_then_nothing_is_stale() -> None:
    rig = Rig()
    rig.open = False
    await rig.watchdog.check()
    rig.clock.advance(10_000)

    status = await rig.watchdog.check()

    assert status.tripped == frozenset()
    assert rig.state.state is TradingState.ACTIVE


async def test_check_when_market_opens_after_quiet_night_then_data_age_counts_from_open() -> None:
    rig = Rig()
    rig.open = False
    await rig.watchdog.check()
    rig.clock.advance(17 * 3600)  # last bar yesterday afternoon
    rig.open = True
    rig.engine_beats()
    await rig.watchdog.check()
    rig.clock.advance(60)
    rig.engine_beats()

    status = await rig.watchdog.check()

    assert status.data_age_s == 60
    assert status.tripped == frozenset()


async def test_check_when_engine_never_beat_then_engine_not_judged() -> None:
    rig = Rig()
    rig.beat = None
    await rig.watchdog.check()
    rig.clock.advance(100)
    rig.data_arrives()

    status = await rig.watchdog.check()

    assert status.tripped == frozenset()


async def test_run_when_a_check_fails_then_logged_and_checking_continues() -> None:
    rig = Rig()
    calls = 0

    def flaky_market_open(ts: datetime) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("calendar hiccup")
        return True

    rig.watchdog._market_open = flaky_market_open
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await rig.watchdog.run(5.0, sleep)

    assert calls == 3
    assert sleeps == [5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("stale", "engine", "expected"), [(120, 60, 15.0), (8, 60, 2.0), (2, 2, 1.0)]
)
def test_check_interval_when_limits_given_then_quarter_of_tightest_within_bounds(
    stale: float, engine: float, expected: float
) -> None:
    assert check_interval(stale, engine) == expected


async def test_check_when_still_no_data_after_trip_then_stays_reducing_and_quiet() -> None:
    rig = Rig()
    await rig.watchdog.check()
    rig.clock.advance(150)
    rig.engine_beats()
    await rig.watchdog.check()
    rig.clock.advance(600)
    rig.engine_beats()

    status = await rig.watchdog.check()

    assert status.tripped == {"stale_data"}
    assert rig.state.state is TradingState.REDUCING
    assert len(rig.notices) == 1
