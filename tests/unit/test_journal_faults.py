"""The journal when SQLite cannot write: a clear error, a flag, and nothing held lost."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from engine.clock import TestClock
from engine.domain import Fill, Side, TradingState
from engine.errors import JournalReadError, JournalWriteError
from engine.store.journal import Journal
from tests.support.app import wait_for
from tests.support.journal_faults import allow_writes, fill_disk, refuse_writes, small_tmpfs

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def make_fill(exec_id: str) -> Fill:
    return Fill(exec_id, "cid-1", "b-1", "AAPL", Side.BUY, Decimal(1), Decimal(10), T0)


def stored_fills(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT execution_id FROM fills ORDER BY id")]


class Changes:
    """Records ``on_writable_change`` calls."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, str]] = []

    def __call__(self, writable: bool, reason: str) -> None:
        self.seen.append((writable, reason))


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "journal.db", TestClock(T0), flush_interval=0.01)
    yield j
    await j.close()


async def write_until_refused(journal: Journal, prefix: str = "e") -> tuple[int, JournalWriteError]:
    """Record fills until one cannot be committed; how many were, and the error."""
    for i in range(10_000):
        try:
            await journal.record_fill(make_fill(f"{prefix}-{i}"))
        except JournalWriteError as exc:
            return i, exc
    raise AssertionError("every write succeeded")


@pytest.mark.parametrize(("how", "words"), [("readonly", "readonly"), ("full", "full")])
async def test_durable_write_when_sqlite_cannot_commit_then_journal_write_error_and_flag_flips(
    journal: Journal, tmp_path: Path, how: str, words: str
) -> None:
    changes = Changes()
    journal.on_writable_change = changes
    await refuse_writes(journal, how)

    written, error = await write_until_refused(journal)

    assert isinstance(error.__cause__, sqlite3.OperationalError)
    assert words in str(error)
    assert str(tmp_path / "journal.db") in str(error)
    assert journal.writable is False
    assert changes.seen[0] == (False, str(error))
    with pytest.raises(JournalWriteError):
        await journal.record_fill(make_fill("again"))
    assert journal.writable is False
    # One call per change, not one per failed write. With "full" (no new page) the flusher's
    # small probe row can still fit in a page and flip the flag back before "again" fails,
    # so a loaded machine may see False, True, False: never the same value twice in a row.
    flags = [w for w, _ in changes.seen]
    assert all(a != b for a, b in itertools.pairwise(flags)), flags

    await allow_writes(journal)
    # Nothing else is written: the flusher's probe finds out that writes work again.
    await wait_for(lambda: journal.writable, within=10)
    assert [w for w, _ in changes.seen][-2:] == [False, True]
    assert await journal.record_fill(make_fill("after")) is True
    assert len(stored_fills(tmp_path / "journal.db")) == written + 1


async def test_hold_fill_when_writes_fail_then_written_once_as_soon_as_writes_work(
    journal: Journal, tmp_path: Path
) -> None:
    await refuse_writes(journal)
    fill = make_fill("held-1")
    with pytest.raises(JournalWriteError):
        await journal.record_fill(fill)

    assert journal.hold_fill(fill) is True
    assert journal.hold_fill(fill) is False  # held once
    assert journal.holds_fill("held-1")
    journal.append_event("tick", {"i": 1}, T0)
    await journal.flush()  # fails quietly: the rows stay
    assert journal.pending == 2

    await allow_writes(journal)
    await wait_for(lambda: journal.pending == 0, within=10)

    assert stored_fills(tmp_path / "journal.db") == ["held-1"]
    assert not journal.holds_fill("held-1")
    assert await journal.record_fill(fill) is False  # a later copy is a duplicate
    assert journal.writable


async def test_flusher_when_write_behind_rows_cannot_be_written_then_flag_flips_and_back(
    journal: Journal,
) -> None:
    changes = Changes()
    journal.on_writable_change = changes
    await refuse_writes(journal)
    journal.append_event("tick", {}, T0)

    await wait_for(lambda: not journal.writable)
    assert journal.pending == 1

    await allow_writes(journal)
    await wait_for(lambda: journal.writable and journal.pending == 0, within=10)
    assert [w for w, _ in changes.seen] == [False, True]


async def test_writable_callback_when_it_raises_then_the_journal_keeps_working(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(writable: bool, reason: str) -> None:
        raise RuntimeError("callback bug")

    journal.on_writable_change = broken
    await refuse_writes(journal)
    with pytest.raises(JournalWriteError):
        await journal.record_fill(make_fill("e-1"))
    assert "on_writable_change failed" in caplog.text
    await allow_writes(journal)
    assert await journal.record_fill(make_fill("e-2")) is True


# ----- a real full disk ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small") as mount:
        yield mount


async def test_journal_when_the_disk_really_fills_then_fills_held_and_written_after_space_frees(
    small_disk: Path,
) -> None:
    path = small_disk / "journal.db"
    journal = await Journal.open(path, TestClock(T0), flush_interval=0.01)
    try:
        await journal.record_fill(make_fill("before"))
        filler = fill_disk(small_disk)

        written, error = await write_until_refused(journal, "full")
        assert "full" in str(error)
        assert journal.writable is False
        held = make_fill("held-on-full-disk")
        assert journal.hold_fill(held)

        filler.unlink()
        await wait_for(lambda: journal.writable and journal.pending == 0, within=15)
        fills = stored_fills(path)
        assert fills[0] == "before"
        assert fills[-1] == "held-on-full-disk"
        assert len(fills) == len(set(fills)) == written + 2
    finally:
        await journal.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_state_write_when_file_is_read_only_then_refused_with_journal_write_error(
    journal: Journal,
) -> None:
    await refuse_writes(journal, "readonly")
    with pytest.raises(JournalWriteError, match="readonly"):
        await journal.record_trading_state(TradingState.HALTED, "trader", "r", "manual", T0)
    with pytest.raises(JournalWriteError):
        await journal.record_audit("trader", "status", "", True, "ok", T0)
    assert await journal.last_trading_state() is None  # reads still work


async def test_read_when_a_page_of_the_file_is_damaged_then_journal_read_error_naming_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    journal = await Journal.open(path, TestClock(T0), flush_interval=0.01)
    for i in range(300):
        await journal.record_fill(make_fill(f"e-{i}"))
    await journal.close()
    size = path.stat().st_size
    with path.open("r+b") as file:  # scribble over the last pages: the fills' leaves
        file.seek(size - 3 * 4096)
        file.write(b"\xa5" * 3 * 4096)

    journal = await Journal.open(path, TestClock(T0), flush_interval=0.01)
    try:
        with pytest.raises(JournalReadError, match=f"journal {path} cannot be read: .*malformed"):
            await journal.load_fills()
    finally:
        await journal.close()
