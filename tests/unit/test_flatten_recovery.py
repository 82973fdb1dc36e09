"""A flatten leaves a mark in the journal while it runs; a restart that finds one finishes the
flatten and restores the state from before it, unless a person changed it since."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.domain import TradingState
from engine.errors import JournalWriteError
from engine.events import Notice
from engine.flatten import Flattener
from engine.flatten_mark import MARK_KEY, FlattenMark
from engine.risk import StateRecord
from tests.support.app import wait_for
from tests.unit.engine_stubs import ExecParts, build_engine, ny, priced_execution
from tests.unit.test_flatten import seed


class RecordingMarks:
    """A mark store that notes the trading state at each write; ``fail`` refuses writes."""

    def __init__(self, p: ExecParts, *, fail: bool = False) -> None:
        self._p = p
        self._fail = fail
        self.writes: list[tuple[str, TradingState]] = []

    async def get_meta(self, key: str) -> str | None:
        return None

    async def set_meta(self, key: str, value: str) -> None:
        assert key == MARK_KEY
        self.writes.append((value, self._p.state.state))
        if self._fail:
            raise JournalWriteError("database or disk is full")


def flattener(p: ExecParts, marks: RecordingMarks) -> Flattener:
    return Flattener(
        broker=p.broker,
        execution=p.execution,
        portfolio=p.portfolio,
        state=p.state,
        market=p.market,
        clock=p.clock,
        bus=p.bus,
        deadline_s=3.0,
        confirm_interval_s=0.05,
        marks=marks,
    )


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[ExecParts]:
    async with priced_execution(tmp_path) as p:
        await seed(p)
        p.start_consumer()
        yield p


async def test_flatten_when_running_then_mark_written_before_reducing_and_cleared_after(
    parts: ExecParts,
) -> None:
    marks = RecordingMarks(parts)

    report = await flattener(parts, marks).flatten("alice")

    assert report.flat
    (first, state_then), (last, state_after) = marks.writes
    mark = FlattenMark.from_json(first)
    assert state_then is TradingState.ACTIVE  # written before the REDUCING
    assert mark.actor == "alice"
    assert mark.replaced is not None
    assert mark.replaced.state is TradingState.ACTIVE
    assert (last, state_after) == ("", TradingState.ACTIVE)


async def test_flatten_when_mark_cannot_be_written_then_flatten_runs_anyway(
    parts: ExecParts,
) -> None:
    report = await flattener(parts, RecordingMarks(parts, fail=True)).flatten("alice")

    assert report.flat
    assert parts.exchange.positions() == []
    assert parts.state.state is TradingState.ACTIVE


async def restart_with(
    tmp_path: Path, *states: StateRecord, mark: FlattenMark | None
) -> tuple[list[Notice], StateRecord]:
    """Journal ``states`` (and ``mark``) as a killed run left them, start an engine on it and
    wait for both recovery notices; returns them and the state record in force after."""
    first = await build_engine(tmp_path)
    for r in states:
        await first.journal.record_trading_state(r.state, r.actor, r.reason, r.cause, r.ts)
    if mark is not None:
        await first.journal.set_meta(MARK_KEY, mark.to_json())
    await first.journal.close()
    p = await build_engine(tmp_path)

    def recovery() -> list[Notice]:
        return [n for n in p.of(Notice) if n.kind == "flatten-recovery"]

    await p.engine.start()
    try:
        await wait_for(lambda: len(recovery()) == 2)
        record = p.engine.state.record
        left = await p.journal.get_meta(MARK_KEY)
    finally:
        await p.engine.stop()
    assert left == ""  # the mark is cleared once the flatten is finished
    return recovery(), record


ACTIVE = StateRecord(TradingState.ACTIVE, "system", "startup", "startup", ny(10))
FLATTENING = StateRecord(
    TradingState.REDUCING, "alice", "flatten in progress", "flatten", ny(10, 30)
)


async def test_restart_when_person_halted_during_the_flatten_then_finished_and_halt_kept(
    tmp_path: Path,
) -> None:
    halted = StateRecord(TradingState.HALTED, "bob", "stop everything", "manual", ny(10, 31))
    mark = FlattenMark("alice", ny(10, 30), ACTIVE)

    notices, record = await restart_with(tmp_path, ACTIVE, FLATTENING, halted, mark=mark)

    assert (record.state, record.actor) == (TradingState.HALTED, "bob")
    assert notices[1].text.endswith("Trading stays HALTED (set by bob).")


async def test_restart_when_flatten_reducing_restored_without_mark_then_finished_and_lifted(
    tmp_path: Path,
) -> None:
    notices, record = await restart_with(tmp_path, ACTIVE, FLATTENING, mark=None)

    assert (record.state, record.actor) == (TradingState.ACTIVE, "alice")
    assert "asked by alice" in notices[0].text
    assert notices[1].text.endswith("Trading is ACTIVE again, as before the flatten.")


async def test_restart_when_no_flatten_was_running_then_nothing_to_finish(tmp_path: Path) -> None:
    first = await build_engine(tmp_path)
    await first.journal.close()
    p = await build_engine(tmp_path)
    await p.engine.start()
    try:
        report = await p.engine.control.finish_interrupted_flatten()
    finally:
        await p.engine.stop()

    assert report is None
    assert not [n for n in p.of(Notice) if n.kind == "flatten-recovery"]
