from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.bus import EventBus
from engine.clock import TestClock
from engine.domain import TradingState
from engine.errors import JournalWriteError, TradingStateError
from engine.events import TradingStateChanged
from engine.risk import Cause, StateRecord, TradingStateController

A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED

# Monday 2026-03-02, 10:00 in New York (EST, UTC-5): New York midnight is 05:00 UTC.
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
NY_MIDNIGHT = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)


@dataclass
class Call:
    state: TradingState
    actor: str
    reason: str
    cause: str
    ts: datetime


@dataclass
class RecordingStore:
    """In-memory StatePersistence: records each call; can fail or hold writes open."""

    calls: list[Call] = field(default_factory=list)
    fail_with: Exception | None = None
    hold: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    max_in_flight: int = 0

    async def record_trading_state(
        self, state: TradingState, actor: str, reason: str, cause: str, ts: datetime
    ) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.entered.set()
            if self.hold is not None:
                await self.hold.wait()
            if self.fail_with is not None:
                raise self.fail_with
            self.calls.append(Call(state, actor, reason, cause, ts))
        finally:
            self.in_flight -= 1


@dataclass
class Harness:
    clock: TestClock
    bus: EventBus
    store: RecordingStore
    controller: TradingStateController
    events: list[TradingStateChanged]
    writes_seen_at_publish: list[int]


def make(initial: StateRecord | None = None) -> Harness:
    clock = TestClock(START)
    bus = EventBus()
    store = RecordingStore()
    events: list[TradingStateChanged] = []
    seen: list[int] = []

    def on_change(event: TradingStateChanged) -> None:
        events.append(event)
        seen.append(len(store.calls))

    bus.subscribe(TradingStateChanged, on_change)
    controller = TradingStateController(bus, clock, store, initial)
    return Harness(clock, bus, store, controller, events, seen)


def record(state: TradingState, cause: str = "manual", ts: datetime = START) -> StateRecord:
    return StateRecord(state, "alice", "earlier", cause, ts)


# --- records ------------------------------------------------------------------------------------


def test_controller_when_no_initial_record_then_active_by_system_at_startup() -> None:
    h = make()

    assert h.controller.state is A
    assert h.controller.record == StateRecord(A, "system", "startup", "startup", START)
    assert h.store.calls == []


def test_state_record_trading_day_when_evening_utc_then_new_york_date() -> None:
    # 03:00 UTC on the 3rd is 22:00 on the 2nd in New York.
    rec = StateRecord(H, "a", "r", "manual", datetime(2026, 3, 3, 3, 0, tzinfo=UTC))

    assert rec.trading_day == date(2026, 3, 2)


def test_state_record_when_restored_from_strings_then_typed_and_utc() -> None:
    ts = datetime.fromisoformat("2026-03-02T10:00:00-05:00")

    rec = StateRecord("HALTED", "a", "r", "manual", ts)  # type: ignore[arg-type]

    assert rec.state is H
    assert rec.ts == START
    assert rec.ts.tzinfo is UTC


# --- transitions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "target"), [(A, H), (A, R), (R, H), (R, A), (H, R), (H, A)])
async def test_set_when_state_changes_then_persisted_then_published_with_who_when_why(
    start: TradingState, target: TradingState
) -> None:
    h = make(record(start))
    h.clock.advance(90)
    now = START + timedelta(seconds=90)

    result = await h.controller.set(target, "bob", "testing", cause="stale_data")

    assert result == StateRecord(target, "bob", "testing", "stale_data", now)
    assert h.controller.record == result
    assert h.controller.state is target
    assert h.store.calls == [Call(target, "bob", "testing", "stale_data", now)]
    assert h.events == [
        TradingStateChanged(
            ts=now, old=start, new=target, actor="bob", reason="testing", cause="stale_data"
        )
    ]
    assert h.writes_seen_at_publish == [1]  # the write had finished before the event went out


async def test_halt_reduce_resume_when_called_then_each_recorded_in_turn() -> None:
    h = make()

    await h.controller.halt("alice", "news")
    await h.controller.reduce("alice", "trim only")
    await h.controller.resume("alice")

    assert [(c.state, c.actor, c.reason, c.cause) for c in h.store.calls] == [
        (H, "alice", "news", "manual"),
        (R, "alice", "trim only", "manual"),
        (A, "alice", "", "manual"),
    ]
    assert [(e.old, e.new) for e in h.events] == [(A, H), (H, R), (R, A)]


async def test_set_when_same_state_and_cause_then_no_write_and_no_event() -> None:
    h = make()
    first = await h.controller.halt("alice", "news")

    again = await h.controller.halt("bob", "also news")

    assert again is first
    assert len(h.store.calls) == 1
    assert len(h.events) == 1


async def test_resume_when_already_active_then_no_write_and_no_event() -> None:
    h = make()

    result = await h.controller.resume("alice", "just in case")

    assert result.cause == "startup"
    assert h.store.calls == []
    assert h.events == []


async def test_halt_when_manually_halted_and_loss_limit_hits_then_escalation_recorded() -> None:
    h = make()
    await h.controller.halt("alice", "lunch")
    h.clock.advance(60)

    result = await h.controller.halt("risk", "day P&L -2,100", cause=Cause.LOSS_LIMIT)

    assert result.cause == "loss_limit"
    assert [c.cause for c in h.store.calls] == ["manual", "loss_limit"]
    assert h.events[-1] == TradingStateChanged(
        ts=START + timedelta(seconds=60),
        old=H,
        new=H,
        actor="risk",
        reason="day P&L -2,100",
        cause="loss_limit",
    )
    assert h.controller.loss_limit_locked


async def test_halt_when_manually_halted_and_automatic_cause_then_manual_halt_kept() -> None:
    h = make()
    manual = await h.controller.halt("alice", "lunch")

    result = await h.controller.halt("monitor", "no data", cause=Cause.STALE_DATA)

    assert result is manual
    assert len(h.store.calls) == 1
    assert len(h.events) == 1


async def test_halt_when_loss_limit_halted_and_manual_halt_then_loss_limit_kept() -> None:
    h = make()
    await h.controller.halt("risk", "limit", cause=Cause.LOSS_LIMIT)

    await h.controller.halt("alice", "me too")

    assert h.controller.record.cause == "loss_limit"
    assert len(h.store.calls) == 1


async def test_set_when_persistence_fails_then_nothing_changes_and_error_propagates() -> None:
    h = make()
    before = h.controller.record
    h.store.fail_with = OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await h.controller.halt("alice", "news")

    assert h.controller.record is before
    assert h.controller.state is A
    assert h.events == []


async def test_set_when_persistence_recovers_then_next_change_applies() -> None:
    h = make()
    h.store.fail_with = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        await h.controller.halt("alice", "news")
    h.store.fail_with = None

    await h.controller.halt("alice", "news")

    assert h.controller.state is H
    assert len(h.events) == 1


async def test_set_when_journal_cannot_write_then_halt_applied_in_memory_and_published() -> None:
    h = make()
    h.store.fail_with = JournalWriteError("database or disk is full")

    after = await h.controller.halt("alice", "news")

    assert after.state is H
    assert h.controller.state is H
    assert h.controller.unpersisted == 1
    assert [(e.old, e.new) for e in h.events] == [(A, H)]
    assert h.store.calls == []


async def test_persist_pending_when_journal_writes_again_then_changes_written_in_order() -> None:
    h = make()
    h.store.fail_with = JournalWriteError("database or disk is full")
    await h.controller.reduce("journal", "cannot write", cause=Cause.STORAGE)
    h.clock.advance(5)
    await h.controller.halt("alice", "news")
    still_failing = await h.controller.persist_pending()
    h.store.fail_with = None

    left = await h.controller.persist_pending()

    assert (still_failing, left) == (2, 0)
    assert [(c.state, c.actor, c.cause) for c in h.store.calls] == [
        (R, "journal", "storage"),
        (H, "alice", "manual"),
    ]
    assert h.store.calls[1].ts == START + timedelta(seconds=5)  # each keeps its own time


async def test_set_when_unwritten_changes_wait_then_written_before_the_next_one() -> None:
    h = make()
    h.store.fail_with = JournalWriteError("database or disk is full")
    await h.controller.halt("alice", "news")
    h.store.fail_with = None

    await h.controller.resume("alice", "all clear")

    assert [c.state for c in h.store.calls] == [H, A]
    assert h.controller.unpersisted == 0


async def test_resume_when_journal_cannot_write_then_refused_with_clear_message() -> None:
    h = make(record(R, cause="storage"))
    h.store.fail_with = JournalWriteError("database or disk is full")

    with pytest.raises(TradingStateError) as caught:
        await h.controller.resume("alice", "go")

    assert str(caught.value) == (
        "The journal cannot be written (database or disk is full), so trading stays REDUCING: "
        "no new positions until it can. !halt and !flatten still work."
    )
    assert h.controller.state is R
    assert h.events == []
    assert h.controller.unpersisted == 0


async def test_reduce_when_storage_over_a_flatten_reducing_then_takes_over_not_over_a_person() -> (
    None
):
    flatten = make(record(R, cause="flatten"))
    person = make(record(R, cause="manual"))

    over_flatten = await flatten.controller.reduce("journal", "x", cause=Cause.STORAGE)
    over_person = await person.controller.reduce("journal", "x", cause=Cause.STORAGE)

    assert over_flatten.cause == "storage"
    assert over_person.cause == "manual"


async def test_set_when_cause_unknown_then_value_error_and_nothing_written() -> None:
    h = make()

    with pytest.raises(ValueError, match="cosmic_rays"):
        await h.controller.halt("alice", "why", cause="cosmic_rays")

    assert h.store.calls == []


async def test_set_when_actor_empty_then_value_error() -> None:
    h = make()

    with pytest.raises(ValueError, match="actor"):
        await h.controller.halt("", "why")

    assert h.controller.state is A


# --- loss-limit lock ----------------------------------------------------------------------------


async def loss_halted() -> Harness:
    h = make()
    await h.controller.halt("risk", "day P&L -2,100", cause=Cause.LOSS_LIMIT)
    return h


@pytest.mark.parametrize("target", [A, R])
async def test_lift_when_loss_limit_halt_same_day_then_refused_with_how_to_override(
    target: TradingState,
) -> None:
    h = await loss_halted()
    h.clock.set(NY_MIDNIGHT - timedelta(minutes=1))  # 23:59 in New York, same day

    with pytest.raises(TradingStateError) as caught:
        await h.controller.set(target, "alice", "want back in")

    message = str(caught.value)
    assert "daily loss limit on 2026-03-02" in message
    assert "resume override" in message
    assert h.controller.state is H
    assert len(h.store.calls) == 1
    assert len(h.events) == 1


async def test_resume_when_loss_limit_halt_same_day_and_override_then_active_and_recorded() -> None:
    h = await loss_halted()

    result = await h.controller.resume("alice", "I know", override=True)

    assert result.state is A
    assert result.reason == "override of the loss-limit halt of 2026-03-02: I know"
    assert h.store.calls[-1].reason == result.reason
    assert h.events[-1].reason == result.reason
    assert h.events[-1].actor == "alice"
    assert not h.controller.loss_limit_locked


async def test_reduce_when_loss_limit_halt_same_day_and_override_then_reducing() -> None:
    h = await loss_halted()

    result = await h.controller.reduce("alice", "", override=True)

    assert result.state is R
    assert result.reason == "override of the loss-limit halt of 2026-03-02"


async def test_resume_when_loss_limit_halt_and_next_trading_day_then_lifts_normally() -> None:
    h = await loss_halted()
    locked_that_day = h.controller.loss_limit_locked
    h.clock.set(NY_MIDNIGHT + timedelta(minutes=1))
    locked_next_day = h.controller.loss_limit_locked

    result = await h.controller.resume("alice", "new day")

    assert (locked_that_day, locked_next_day) == (True, False)
    assert result.state is A
    assert result.reason == "new day"


async def test_resume_when_loss_limit_halt_restored_on_restart_same_day_then_refused() -> None:
    h = make(record(H, cause="loss_limit", ts=START - timedelta(hours=1)))

    assert h.controller.loss_limit_locked
    with pytest.raises(TradingStateError):
        await h.controller.resume("alice")


async def test_loss_limit_locked_when_manual_halt_then_false() -> None:
    h = make()
    await h.controller.halt("alice", "lunch")

    assert not h.controller.loss_limit_locked
    assert (await h.controller.resume("alice")).state is A


# --- the loss limit halts once per trading day --------------------------------------------------


def test_claim_loss_halt_when_asked_twice_the_same_day_then_only_the_first_wins() -> None:
    h = make()

    first, second = h.controller.claim_loss_halt(), h.controller.claim_loss_halt()
    h.clock.set(NY_MIDNIGHT + timedelta(hours=15))
    next_day = h.controller.claim_loss_halt()

    assert (first, second, next_day) == (True, False, True)


def test_claim_loss_halt_when_restored_with_todays_loss_halt_then_refused() -> None:
    h = make()
    h.controller.restore(None, loss_halt_day=date(2026, 3, 2))

    assert h.controller.claim_loss_halt() is False


async def test_claim_loss_halt_when_loss_limit_halt_recorded_today_then_refused() -> None:
    h = make()
    await h.controller.halt("risk", "limit", cause=Cause.LOSS_LIMIT)
    await h.controller.resume("alice", "go", override=True)

    assert h.controller.claim_loss_halt() is False


# --- automatic recovery -------------------------------------------------------------------------


async def test_resume_when_if_cause_differs_then_no_change() -> None:
    h = make()
    await h.controller.halt("alice", "lunch")

    result = await h.controller.resume("monitor", "broker back", if_cause=Cause.BROKER_UNREACHABLE)

    assert result.state is H
    assert len(h.store.calls) == 1


async def test_resume_when_if_cause_matches_then_resumed() -> None:
    h = make()
    await h.controller.halt("monitor", "broker down", cause=Cause.BROKER_UNREACHABLE)

    result = await h.controller.resume("monitor", "broker back", if_cause=Cause.BROKER_UNREACHABLE)

    assert result.state is A
    assert [e.new for e in h.events] == [H, A]


async def test_reduce_when_trader_reduces_during_flatten_then_flatten_cleanup_keeps_it() -> None:
    h = make()
    await h.controller.reduce("alice", "flatten in progress", cause=Cause.FLATTEN)
    await h.controller.reduce("bob", "stay reducing")

    result = await h.controller.resume("alice", "flatten finished", if_cause=Cause.FLATTEN)

    assert (result.state, result.actor, result.cause) == (R, "bob", "manual")
    assert [c.cause for c in h.store.calls] == ["flatten", "manual"]


# --- concurrency --------------------------------------------------------------------------------


async def test_set_when_called_concurrently_then_serialized_in_call_order() -> None:
    h = make()
    h.store.hold = asyncio.Event()

    first = asyncio.create_task(h.controller.halt("alice", "first"))
    second = asyncio.create_task(h.controller.reduce("bob", "second"))
    await asyncio.wait_for(h.store.entered.wait(), timeout=5)
    # Both tasks have run up to their first wait: the second must be queued on the lock.
    assert h.store.in_flight == 1
    assert h.controller.state is A
    h.store.hold.set()
    results = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)

    assert [r.state for r in results] == [H, R]
    assert [(c.state, c.actor) for c in h.store.calls] == [(H, "alice"), (R, "bob")]
    assert [(e.old, e.new) for e in h.events] == [(A, H), (H, R)]
    assert h.store.max_in_flight == 1
    assert h.controller.state is R
