import asyncio
import contextlib
import dataclasses
import gc
import json
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from engine.clock import TestClock
from engine.domain import Fill, OrderRequest, OrderStatus, Side, TradingState
from engine.errors import JournalWriteError
from engine.orders import Order
from engine.store import schema
from engine.store.journal import Journal
from engine.store.records import EquitySnapshot, ts_to_text
from tests.support.journal_faults import allow_writes, refuse_writes

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[2]
MANUAL = 3600.0  # a flush interval long enough that only explicit flushes write


def raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the file through a second, plain connection (what another process would see)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


def raw_write(path: Path, script: str) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript(script)


def make_fill(exec_id: str, *, cid: str = "cid-1", qty: str = "1", price: str = "10") -> Fill:
    return Fill(
        execution_id=exec_id,
        client_order_id=cid,
        broker_order_id="b-1",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(qty),
        price=Decimal(price),
        ts=T0 + timedelta(seconds=5),
    )


def make_order(cid: str = "cid-1", qty: str = "10", created_at: datetime = T0) -> Order:
    request = OrderRequest(client_order_id=cid, symbol="AAPL", side=Side.BUY, qty=Decimal(qty))
    return Order.from_request(request, created_at=created_at)


def snapshot(ts: datetime, equity: str, day_pnl: str | None = "0") -> EquitySnapshot:
    return EquitySnapshot(
        ts=ts,
        equity=Decimal(equity),
        cash=Decimal("1000.00"),
        day_pnl=None if day_pnl is None else Decimal(day_pnl),
        gross_exposure=Decimal("500.5"),
        net_exposure=Decimal("-20.25"),
    )


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def journal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


@pytest.fixture
def clock() -> TestClock:
    return TestClock(T0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"


@pytest.fixture
async def journal(db_path: Path, clock: TestClock) -> AsyncIterator[Journal]:
    j = await Journal.open(db_path, clock, flush_interval=MANUAL)
    yield j
    await j.close()


# ----- schema, migrations, lifecycle ----------------------------------------------------------


async def test_open_when_new_file_then_creates_dir_schema_and_wal(
    journal: Journal, db_path: Path
) -> None:
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert raw(db_path, "SELECT version FROM schema_version ORDER BY version") == [
        (1,),
        (2,),
        (3,),
    ]
    tables = {row[0] for row in raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "orders", "fills", "trading_state", "audit", "meta"} <= tables
    assert {"daily_counters", "equity_snapshots", "schema_version", "quarantine"} <= tables


async def test_recorded_at_when_written_then_the_clock_reading_and_not_kept_as_a_known_time(
    journal: Journal, db_path: Path, clock: TestClock
) -> None:
    clock.advance(0.000007)  # a wall clock's reading: it never comes again
    known = dict(ts_to_text._known)

    await journal.set_meta("k", "v")

    assert raw(db_path, "SELECT recorded_at FROM meta WHERE key = 'k'") == [
        (ts_to_text.once(clock.now()),)
    ]
    assert ts_to_text._known == known  # nothing pushed out of the times that do repeat


async def test_open_when_reopened_then_data_preserved(db_path: Path, clock: TestClock) -> None:
    first = await Journal.open(db_path, clock, flush_interval=MANUAL)
    await first.record_fill(make_fill("e-1"))
    first.append_event("note", {"n": 1}, T0)
    await first.set_meta("owner", "alice")
    await first.close()

    second = await Journal.open(db_path, clock, flush_interval=MANUAL)
    try:
        assert [f.execution_id for f in await second.load_fills()] == ["e-1"]
        assert [e.payload for e in await second.events()] == [{"n": 1}]
        assert await second.get_meta("owner") == "alice"
    finally:
        await second.close()


async def test_open_when_file_is_version_1_then_upgraded_and_data_kept(
    db_path: Path, clock: TestClock
) -> None:
    db_path.parent.mkdir(parents=True)
    raw_write(
        db_path,
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        " STRICT;"
        + schema.MIGRATIONS[0]
        + "INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00.000000+00:00');"
        "INSERT INTO meta VALUES ('owner', 'alice', '2026-01-01T00:00:00.000000+00:00');",
    )

    j = await Journal.open(db_path, clock, flush_interval=MANUAL)
    try:
        await j.set_counter(date(2026, 11, 20), "trades", "3")
        assert await j.get_meta("owner") == "alice"
        assert await j.get_counter(date(2026, 11, 20), "trades") == "3"
    finally:
        await j.close()
    versions = raw(db_path, "SELECT version, applied_at FROM schema_version ORDER BY version")
    assert versions == [
        (1, "2026-01-01T00:00:00.000000+00:00"),
        (2, "2026-11-20T15:00:00.000000+00:00"),
        (3, "2026-11-20T15:00:00.000000+00:00"),
    ]


async def test_open_when_file_is_newer_than_code_then_refused_and_no_thread_left(
    db_path: Path, clock: TestClock
) -> None:
    first = await Journal.open(db_path, clock, flush_interval=MANUAL)
    await first.close()
    raw_write(db_path, "INSERT INTO schema_version VALUES (99, '2030-01-01T00:00:00+00:00');")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(
            schema.SchemaError, match=rf"version 99 .* knows only up to {len(schema.MIGRATIONS)}"
        ):
            await Journal.open(db_path, clock, flush_interval=MANUAL)
        gc.collect()

    # aiosqlite warns when a connection is garbage-collected without close().
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    for thread in journal_threads():
        thread.join(timeout=5)
    assert journal_threads() == []


async def test_migrate_when_a_script_fails_then_that_version_is_rolled_back(
    db_path: Path, clock: TestClock
) -> None:
    broken = "CREATE TABLE extra (a TEXT) STRICT; INSERT INTO no_such_table VALUES (1);"
    db_path.parent.mkdir(parents=True)
    db = await aiosqlite.connect(db_path, isolation_level=None)
    try:
        failing = len(schema.MIGRATIONS) + 1
        with pytest.raises(schema.SchemaError, match=f"version {failing} failed"):
            await schema.migrate(db, T0, (*schema.MIGRATIONS, broken))
        assert await schema.current_version(db) == failing - 1
    finally:
        await db.close()
    assert raw(db_path, "SELECT name FROM sqlite_master WHERE name = 'extra'") == []


async def test_close_when_called_twice_then_second_is_a_no_op_and_writes_refused(
    db_path: Path, clock: TestClock
) -> None:
    j = await Journal.open(db_path, clock, flush_interval=MANUAL)
    j.append_event("last", {}, T0)

    await j.close()
    await j.close()

    assert raw(db_path, "SELECT kind FROM events") == [("last",)]
    with pytest.raises(RuntimeError, match="closed"):
        j.append_event("late", {}, T0)
    with pytest.raises(RuntimeError, match="closed"):
        await j.record_fill(make_fill("e-1"))


def test_close_when_journal_used_in_a_process_then_process_exits(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from datetime import UTC, datetime\n"
        "from pathlib import Path\n"
        "from engine.clock import SystemClock\n"
        "from engine.store.journal import Journal\n"
        "async def main():\n"
        "    j = await Journal.open(Path(sys.argv[1]), SystemClock())\n"
        "    j.append_event('boot', {'ok': True}, datetime.now(UTC))\n"
        "    await j.set_meta('k', 'v')\n"
        "    await j.close()\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "j.db")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert raw(tmp_path / "j.db", "SELECT value FROM meta WHERE key = 'k'") == [("v",)]


# ----- durable writes ---------------------------------------------------------------------------


async def test_record_fill_when_execution_id_repeats_then_false_and_stored_once(
    journal: Journal,
) -> None:
    assert await journal.record_fill(make_fill("e-1", qty="2")) is True

    assert await journal.record_fill(make_fill("e-1", qty="5")) is False

    fills = await journal.load_fills()
    assert [(f.execution_id, f.qty) for f in fills] == [("e-1", Decimal("2"))]


async def test_record_fill_when_extreme_decimals_and_offset_time_then_round_trip_exactly(
    journal: Journal, db_path: Path
) -> None:
    eastern = timezone(timedelta(hours=-5))
    fill = Fill(
        execution_id="e-1",
        client_order_id="cid-1",
        broker_order_id="b-1",
        symbol="AAPL",
        side=Side.SELL,
        qty=Decimal("0.000001"),
        price=Decimal("123456789.123456789"),
        ts=datetime(2026, 11, 20, 10, 30, 0, 123456, tzinfo=eastern),
        commission=Decimal("1E-7"),
    )

    await journal.record_fill(fill)
    (loaded,) = await journal.load_fills()

    assert loaded == fill
    assert loaded.ts.tzinfo is UTC
    assert loaded.ts == datetime(2026, 11, 20, 15, 30, 0, 123456, tzinfo=UTC)
    assert str(loaded.commission) == "1E-7"
    assert raw(db_path, "SELECT typeof(qty), qty, ts FROM fills") == [
        ("text", "0.000001", "2026-11-20T15:30:00.123456+00:00")
    ]


async def test_record_fill_when_float_or_naive_time_then_refused_before_writing(
    journal: Journal,
) -> None:
    bad_qty = dataclasses.replace(make_fill("e-1"), qty=0.1)
    naive = dataclasses.replace(make_fill("e-2"), ts=datetime(2026, 11, 20))

    with pytest.raises(TypeError, match="expected Decimal"):
        await journal.record_fill(bad_qty)
    with pytest.raises(ValueError, match="naive"):
        await journal.record_fill(naive)
    assert await journal.load_fills() == []


async def test_durable_call_when_rows_pending_then_they_are_committed_with_it(
    journal: Journal, db_path: Path
) -> None:
    journal.append_event("before-fill", {"i": 1}, T0)
    journal.save_order(make_order())
    assert raw(db_path, "SELECT count(*) FROM events") == [(0,)]

    await journal.record_fill(make_fill("e-1"))

    assert journal.pending == 0
    assert raw(db_path, "SELECT kind FROM events") == [("before-fill",)]
    assert raw(db_path, "SELECT client_order_id FROM orders") == [("cid-1",)]
    assert raw(db_path, "SELECT execution_id FROM fills") == [("e-1",)]


async def test_durable_row_when_not_a_fill_then_held_rows_go_with_it_and_events_wait(
    journal: Journal, db_path: Path
) -> None:
    # A flatten's last writes (state, mark, audit) must not carry the thousands of rows its
    # trade updates left pending; a held row (a durable row still owed) still goes first.
    journal.append_event("before-state", {"i": 1}, T0)
    journal.save_order(make_order())
    journal.record_audit_later("alice", "status", "", True, "shown", T0)

    await journal.record_trading_state(TradingState.HALTED, "bob", "why", "manual", T0)

    assert raw(db_path, "SELECT state FROM trading_state") == [("HALTED",)]
    assert raw(db_path, "SELECT actor FROM audit") == [("alice",)]
    assert raw(db_path, "SELECT count(*) FROM events") == [(0,)]
    assert raw(db_path, "SELECT count(*) FROM orders") == [(0,)]
    assert journal.pending == 2
    await journal.flush()
    assert raw(db_path, "SELECT kind FROM events") == [("before-state",)]
    assert raw(db_path, "SELECT client_order_id FROM orders") == [("cid-1",)]


async def test_durable_row_when_written_then_one_trip_to_sqlite_thread_per_statement(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind a busy loop (a flatten's burst) every trip to aiosqlite's thread waits for a turn
    # of the loop: BEGIN, the row and COMMIT are three, not six (a cursor's close is a trip).
    db = journal._writer.conn
    trips: list[object] = []
    real = db._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(db, "_execute", counted)

    await journal.record_trading_state(TradingState.HALTED, "bob", "why", "manual", T0)

    assert len(trips) == 3


async def test_durable_call_when_caller_cancelled_then_write_still_completes(
    journal: Journal,
) -> None:
    task = asyncio.create_task(journal.record_fill(make_fill("e-1")))
    await asyncio.sleep(0)  # let it queue its transaction

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await journal.record_fill(make_fill("e-2"))

    assert [f.execution_id for f in await journal.load_fills()] == ["e-1", "e-2"]


async def test_trading_state_when_changes_recorded_then_last_and_history_newest_first(
    journal: Journal, clock: TestClock
) -> None:
    await journal.record_trading_state(TradingState.ACTIVE, "system", "startup", "boot", T0)
    clock.advance(60)
    await journal.record_trading_state(
        TradingState.HALTED, "alice", "loss limit hit", "daily_loss", T0 + timedelta(seconds=55)
    )

    last = await journal.last_trading_state()
    history = await journal.trading_state_history()

    assert last is not None
    assert (last.state, last.actor, last.reason, last.cause) == (
        TradingState.HALTED,
        "alice",
        "loss limit hit",
        "daily_loss",
    )
    assert last.ts == T0 + timedelta(seconds=55)
    assert last.recorded_at == T0 + timedelta(seconds=60)
    assert [r.state for r in history] == [TradingState.HALTED, TradingState.ACTIVE]


async def test_last_trading_state_when_none_recorded_then_none(journal: Journal) -> None:
    assert await journal.last_trading_state() is None


async def test_audit_rows_when_several_commands_then_newest_first_with_ok_flag(
    journal: Journal,
) -> None:
    await journal.record_audit("alice", "halt", "reason=x", True, "halted", T0)
    await journal.record_audit("bob", "resume", "", False, "not allowed", T0)
    await journal.record_audit("alice", "status", "", True, "ok", T0)

    rows = await journal.audit_rows(limit=2)

    assert [(r.actor, r.command, r.ok, r.result) for r in rows] == [
        ("alice", "status", True, "ok"),
        ("bob", "resume", False, "not allowed"),
    ]


async def test_counters_when_set_on_two_days_then_kept_per_day_and_overwritten(
    journal: Journal,
) -> None:
    day1, day2 = date(2026, 11, 19), date(2026, 11, 20)
    await journal.set_counter(day1, "trades", "3")
    await journal.set_counter(day2, "trades", "1")
    await journal.set_counter(day1, "trades", "4")

    assert await journal.get_counter(day1, "trades") == "4"
    assert await journal.get_counter(day2, "trades") == "1"
    assert await journal.get_counter(date(2026, 11, 21), "trades") is None
    assert await journal.get_counter(day1, "loss") is None


async def test_meta_when_set_twice_then_last_value_wins(journal: Journal) -> None:
    await journal.set_meta("day_start_equity", "100000.00")
    await journal.set_meta("day_start_equity", "100250.50")

    assert await journal.get_meta("day_start_equity") == "100250.50"
    assert await journal.get_meta("missing") is None


# ----- write-behind -----------------------------------------------------------------------------


async def test_write_behind_when_not_flushed_then_invisible_and_counted_pending(
    journal: Journal, db_path: Path
) -> None:
    journal.append_event("tick", {"price": Decimal("1.5")}, T0)
    journal.save_order(make_order())
    journal.save_equity_snapshot(snapshot(T0, "1000"))

    assert journal.pending == 3
    assert raw(db_path, "SELECT count(*) FROM events") == [(0,)]
    assert raw(db_path, "SELECT count(*) FROM orders") == [(0,)]
    assert raw(db_path, "SELECT count(*) FROM equity_snapshots") == [(0,)]

    await journal.flush()

    assert journal.pending == 0
    assert raw(db_path, "SELECT count(*) FROM events") == [(1,)]
    assert raw(db_path, "SELECT count(*) FROM orders") == [(1,)]
    assert raw(db_path, "SELECT count(*) FROM equity_snapshots") == [(1,)]


async def test_save_order_when_saved_twice_before_flush_then_one_row_with_latest_state(
    journal: Journal, db_path: Path
) -> None:
    order = make_order()
    journal.save_order(order)
    order.transition(OrderStatus.SUBMITTED, T0, reason="accepted")
    journal.save_order(order)

    assert journal.pending == 1
    await journal.flush()

    assert raw(db_path, "SELECT status, reason FROM orders") == [("submitted", "accepted")]


async def test_flush_when_many_rows_then_few_statements_and_every_row_in_order(
    journal: Journal, db_path: Path
) -> None:
    # One statement per row (executemany) hands the GIL to SQLite's thread and back per row:
    # behind a busy event loop each hand-back waits a switch interval, 8,000 rows 8 s.
    for i in range(1200):
        journal.append_event(f"e{i:04d}", {"i": i}, T0)
    for i in range(700):
        journal.save_order(make_order(f"cid-{i:03d}"))
    late = make_order("cid-000")
    late.transition(OrderStatus.SUBMITTED, T0, reason="accepted")
    journal.save_order(late)  # replaces the first save of cid-000
    statements: list[str] = []
    await journal._writer.conn.set_trace_callback(statements.append)

    await journal.flush()

    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert 2 <= len(inserts) <= 6
    kinds = raw(db_path, "SELECT kind FROM events ORDER BY id")
    assert kinds == [(f"e{i:04d}",) for i in range(1200)]
    assert raw(db_path, "SELECT count(*) FROM orders") == [(700,)]
    assert raw(db_path, "SELECT status FROM orders WHERE client_order_id = 'cid-000'") == [
        ("submitted",)
    ]


async def test_flusher_when_interval_passes_then_rows_written_without_flush(
    db_path: Path, clock: TestClock
) -> None:
    j = await Journal.open(db_path, clock, flush_interval=0.02)
    try:
        j.append_event("tick", {}, T0)
        await wait_for(lambda: raw(db_path, "SELECT count(*) FROM events") == [(1,)])
        assert j.pending == 0
    finally:
        await j.close()


async def test_flusher_when_batch_size_reached_then_writes_before_interval(
    db_path: Path, clock: TestClock
) -> None:
    j = await Journal.open(db_path, clock, flush_interval=MANUAL, batch_size=3)
    try:
        j.append_event("a", {}, T0)
        j.append_event("b", {}, T0)
        assert j.pending == 2
        j.append_event("c", {}, T0)
        await wait_for(lambda: j.pending == 0)
        assert raw(db_path, "SELECT kind FROM events ORDER BY id") == [("a",), ("b",), ("c",)]
    finally:
        await j.close()


async def test_flusher_when_a_burst_waits_then_written_in_transactions_of_batch_size(
    db_path: Path, clock: TestClock
) -> None:
    # A durable write queued behind the flusher waits for one small transaction, not for
    # everything a burst left pending.
    j = await Journal.open(db_path, clock, flush_interval=MANUAL, batch_size=3)
    try:
        statements: list[str] = []
        await j._writer.conn.set_trace_callback(statements.append)
        for i in range(9):
            j.append_event(f"e{i}", {}, T0)
        await wait_for(lambda: j.pending == 0)
        commits = [s for s in statements if s.strip().upper() == "COMMIT"]
        assert len(commits) == 3
        assert raw(db_path, "SELECT kind FROM events ORDER BY id") == [(f"e{i}",) for i in range(9)]
    finally:
        await j.close()


async def test_flush_when_table_missing_then_rows_kept_and_written_later(
    journal: Journal, db_path: Path
) -> None:
    ddl = raw(db_path, "SELECT sql FROM sqlite_master WHERE name = 'events'")[0][0]
    raw_write(db_path, "DROP TABLE events;")
    journal.append_event("kept", {"i": 1}, T0)

    await journal.flush()
    assert journal.pending == 1

    raw_write(db_path, f"{ddl};")
    await journal.flush()
    assert journal.pending == 0
    assert raw(db_path, "SELECT kind FROM events") == [("kept",)]


async def test_flusher_when_write_fails_then_logs_and_retries_until_written(
    db_path: Path, clock: TestClock, caplog: pytest.LogCaptureFixture
) -> None:
    j = await Journal.open(db_path, clock, flush_interval=0.01)
    try:
        ddl = raw(db_path, "SELECT sql FROM sqlite_master WHERE name = 'events'")[0][0]
        raw_write(db_path, "DROP TABLE events;")
        j.append_event("kept", {}, T0)
        await wait_for(lambda: any("rows failed" in r.getMessage() for r in caplog.records))
        assert j.pending == 1

        raw_write(db_path, f"{ddl};")
        await wait_for(lambda: j.pending == 0)
        assert raw(db_path, "SELECT kind FROM events") == [("kept",)]
    finally:
        await j.close()


async def test_flush_when_database_refuses_one_row_then_others_written_and_bad_one_dropped(
    journal: Journal, db_path: Path
) -> None:
    raw_write(
        db_path,
        "DROP TABLE events; CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " kind TEXT NOT NULL CHECK (kind != 'bad'), payload TEXT NOT NULL,"
        " event_time TEXT NOT NULL, recorded_at TEXT NOT NULL) STRICT;",
    )
    for kind in ("good-1", "bad", "good-2"):
        journal.append_event(kind, {}, T0)

    for _ in range(3):  # refused three times, then written row by row
        await journal.flush()

    assert journal.pending == 0
    assert journal.dropped == 1
    assert raw(db_path, "SELECT kind FROM events ORDER BY id") == [("good-1",), ("good-2",)]


async def test_append_when_buffer_full_then_oldest_event_dropped_and_counted(
    db_path: Path, clock: TestClock
) -> None:
    j = await Journal.open(db_path, clock, flush_interval=MANUAL, batch_size=2, max_pending=2)
    try:
        for kind in ("e1", "e2", "e3"):
            j.append_event(kind, {}, T0)
        assert (j.pending, j.dropped) == (2, 1)
        await j.flush()
        assert raw(db_path, "SELECT kind FROM events ORDER BY id") == [("e2",), ("e3",)]
    finally:
        await j.close()


async def test_events_when_read_then_newest_first_filtered_and_payload_encoded(
    journal: Journal, clock: TestClock
) -> None:
    journal.append_event("fill", {"qty": Decimal("0.5"), "side": Side.BUY, "at": T0}, T0)
    clock.advance(1)
    journal.append_event("state", {"new": TradingState.HALTED}, T0 + timedelta(seconds=1))
    clock.advance(1)
    journal.append_event("fill", {"qty": Decimal("2"), "tags": {"b", "a"}}, T0)

    everything = await journal.events()
    fills = await journal.events(kind="fill", limit=1)

    assert [e.kind for e in everything] == ["fill", "state", "fill"]
    assert everything[2].payload == {
        "qty": "0.5",
        "side": "buy",
        "at": "2026-11-20T15:00:00+00:00",
    }
    assert everything[1].payload == {"new": "HALTED"}
    assert everything[1].recorded_at == T0 + timedelta(seconds=1)
    assert [e.payload for e in fills] == [{"qty": "2", "tags": ["a", "b"]}]


async def test_append_event_when_payload_not_encodable_then_raises_at_call(
    journal: Journal,
) -> None:
    with pytest.raises(TypeError, match="cannot store object"):
        journal.append_event("x", {"thing": object()}, T0)
    with pytest.raises(ValueError, match="naive"):
        journal.append_event("x", {}, datetime(2026, 11, 20))
    assert journal.pending == 0


async def test_equity_snapshots_when_since_given_then_later_ones_oldest_first(
    journal: Journal,
) -> None:
    for minute, equity in ((0, "1000"), (5, "1010.25"), (10, "995.125")):
        journal.save_equity_snapshot(snapshot(T0 + timedelta(minutes=minute), equity, None))

    snaps = await journal.equity_snapshots(since=T0 + timedelta(minutes=5))

    assert [s.equity for s in snaps] == [Decimal("1010.25"), Decimal("995.125")]
    assert snaps[0] == snapshot(T0 + timedelta(minutes=5), "1010.25", None)


# ----- orders -----------------------------------------------------------------------------------


async def test_load_orders_when_saved_with_fills_then_rebuilt_with_execution_ids(
    journal: Journal,
) -> None:
    partial = make_order("cid-1", qty="10")
    partial.transition(OrderStatus.SUBMITTED, T0)
    partial.broker_order_id = "b-1"
    for fill in (make_fill("e-1", qty="2", price="10"), make_fill("e-2", qty="1", price="13")):
        partial.apply_fill(fill)
        journal.save_order(partial)
        await journal.record_fill(fill)
    cancelled = make_order("cid-2", qty="5", created_at=T0 + timedelta(minutes=1))
    cancelled.transition(OrderStatus.CANCELLED, T0 + timedelta(minutes=2), reason="user")
    journal.save_order(cancelled)

    orders = await journal.load_orders()
    open_orders = await journal.load_orders(open_only=True)
    recent = await journal.load_orders(since=T0 + timedelta(seconds=30))

    assert [o.client_order_id for o in orders] == ["cid-1", "cid-2"]
    loaded = orders[0]
    assert loaded.status is OrderStatus.PARTIALLY_FILLED
    assert loaded.filled_qty == Decimal("3")
    assert loaded.avg_fill_price == Decimal("11")  # (2*10 + 1*13) / 3
    assert loaded.execution_ids == {"e-1", "e-2"}
    assert loaded.broker_order_id == "b-1"
    assert loaded.updated_at == T0 + timedelta(seconds=5)
    assert (orders[1].status, orders[1].reason, orders[1].execution_ids) == (
        OrderStatus.CANCELLED,
        "user",
        set(),
    )
    assert [o.client_order_id for o in open_orders] == ["cid-1"]
    assert [o.client_order_id for o in recent] == ["cid-2"]


async def test_load_orders_when_row_lags_its_fills_then_fills_win(journal: Journal) -> None:
    order = make_order("cid-1", qty="3")
    order.transition(OrderStatus.SUBMITTED, T0)
    journal.save_order(order)
    await journal.record_fill(make_fill("e-1", qty="1", price="10"))
    await journal.record_fill(make_fill("e-2", qty="2", price="11"))

    (loaded,) = await journal.load_orders()

    assert loaded.status is OrderStatus.FILLED
    assert loaded.filled_qty == Decimal("3")
    assert loaded.avg_fill_price == Decimal("32") / Decimal("3")


async def test_client_order_ids_when_pending_written_or_filled_then_known(
    journal: Journal,
) -> None:
    journal.save_order(make_order("old", created_at=T0 - timedelta(days=1)))
    journal.save_order(make_order("new", created_at=T0))
    await journal.record_fill(make_fill("e-9", cid="manual-at-broker"))

    assert await journal.has_client_order_id("new") is True  # still pending
    await journal.flush()
    assert await journal.has_client_order_id("old") is True
    assert await journal.has_client_order_id("manual-at-broker") is True
    assert await journal.has_client_order_id("never") is False
    assert await journal.client_order_ids_since(T0) == {"new", "manual-at-broker"}


# ----- quarantine -------------------------------------------------------------------------------


async def test_quarantine_when_kept_then_read_back_newest_first_exactly_as_received(
    journal: Journal, db_path: Path
) -> None:
    await journal.quarantine("trade_update", make_fill("bad-1", qty="-5"), "qty negative", T0)
    await journal.quarantine("journal", {"row": 7, "qty": Decimal("1.50")}, "unreadable row", T0)
    await journal.quarantine("trade_update", b"\xff{not json", "malformed", T0)

    newest, middle, oldest = await journal.quarantined()

    assert (newest.source, newest.reason) == ("trade_update", "malformed")
    assert json.loads(newest.payload) == {"raw": "\ufffd{not json"}
    assert json.loads(middle.payload) == {"row": 7, "qty": "1.50"}
    assert json.loads(oldest.payload)["qty"] == "-5"
    assert oldest.ts == T0
    assert [r.reason for r in await journal.quarantined(limit=1)] == ["malformed"]
    assert raw(db_path, "SELECT count(*) FROM fills") == [(0,)]  # kept aside, not applied


async def test_quarantine_when_journal_cannot_write_then_held_and_written_later(
    journal: Journal, db_path: Path
) -> None:
    await refuse_writes(journal)

    await journal.quarantine("trade_update", {"qty": "-1"}, "qty negative", T0)  # no raise

    assert raw(db_path, "SELECT count(*) FROM quarantine") == [(0,)]
    await allow_writes(journal)
    await journal.flush()
    [kept] = await journal.quarantined()
    assert kept.reason == "qty negative"


# ----- fills committed in groups ----------------------------------------------------------------


async def test_record_fill_when_called_concurrently_then_one_transaction_and_each_on_disk_on_return(
    journal: Journal, db_path: Path
) -> None:
    before = journal.fill_commits
    seen_on_disk: list[bool] = []

    async def record(i: int) -> bool:
        new = await journal.record_fill(make_fill(f"g-{i}", cid=f"cid-{i}"))
        # What another process sees the moment the call returns: the row is committed.
        found = raw(db_path, "SELECT 1 FROM fills WHERE execution_id = ?", (f"g-{i}",))
        seen_on_disk.append(found == [(1,)])
        return new

    results = await asyncio.gather(*(record(i) for i in range(200)))

    assert results == [True] * 200
    assert seen_on_disk == [True] * 200
    assert journal.fill_commits - before == 1
    assert raw(db_path, "SELECT count(*) FROM fills") == [(200,)]


async def test_record_fill_when_same_execution_twice_in_one_group_then_stored_once(
    journal: Journal, db_path: Path
) -> None:
    await journal.record_fill(make_fill("old"))

    results = await asyncio.gather(
        journal.record_fill(make_fill("dup")),
        journal.record_fill(make_fill("dup")),
        journal.record_fill(make_fill("old")),
    )

    assert results == [True, False, False]
    assert raw(db_path, "SELECT execution_id FROM fills ORDER BY id") == [("old",), ("dup",)]


async def test_record_fill_when_database_refuses_one_row_of_a_group_then_the_others_commit(
    journal: Journal, db_path: Path
) -> None:
    raw_write(
        db_path,
        "CREATE TRIGGER refuse BEFORE INSERT ON fills WHEN NEW.execution_id = 'bad'"
        " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END;",
    )

    results = await asyncio.gather(
        journal.record_fill(make_fill("ok-1")),
        journal.record_fill(make_fill("bad")),
        journal.record_fill(make_fill("ok-2")),
        return_exceptions=True,
    )

    assert results[0] is True
    assert isinstance(results[1], JournalWriteError)
    assert results[2] is True
    assert raw(db_path, "SELECT execution_id FROM fills ORDER BY id") == [("ok-1",), ("ok-2",)]
    assert journal.writable  # the row's fault, not the disk's


async def test_record_fill_when_group_cannot_be_written_then_every_caller_told(
    journal: Journal, db_path: Path
) -> None:
    await refuse_writes(journal)

    results = await asyncio.gather(
        *(journal.record_fill(make_fill(f"w-{i}")) for i in range(5)), return_exceptions=True
    )

    assert all(isinstance(r, JournalWriteError) for r in results)
    assert not journal.writable
    assert raw(db_path, "SELECT count(*) FROM fills") == [(0,)]
