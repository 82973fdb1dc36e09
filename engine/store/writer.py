"""The journal's connection: one aiosqlite connection, one lock, every transaction.

Every transaction runs under one ``asyncio.Lock`` inside a task that a caller's cancellation
cannot cut short, so no transaction is ever left half done. The writer also keeps the
``writable`` flag: False from the first write SQLite could not commit (disk full, read-only,
I/O error...) until a write succeeds again; while it is False the flusher keeps retrying (with
a small probe row when nothing else is pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from engine.errors import JournalReadError, JournalWriteError
from engine.store import schema
from engine.store.write_behind import ISOLATE_AFTER, Params, WriteBehind, is_row_error

log = logging.getLogger(__name__)

T = TypeVar("T")

_CLOSE_FLUSH_TIMEOUT = 10.0
PROBE_KEY = "journal_probe"

_VALUES = re.compile(r"\bVALUES\s*(\([?,\s]*\))", re.IGNORECASE)
_MAX_ROWS = 500
_MAX_PARAMS = 32_000
"""SQLite (3.32+) takes at most 32,766 parameters in one statement."""


@functools.lru_cache(maxsize=512)
def multi_row_sql(sql: str, rows: int) -> str | None:
    """``sql`` (an ``INSERT ... VALUES (?, ...)``, upserts included) with ``rows`` value
    tuples; None for a statement of another shape."""
    match = _VALUES.search(sql)
    if match is None:
        return None
    group = match.group(1)
    return sql[: match.start(1)] + ", ".join([group] * rows) + sql[match.end(1) :]


async def write_rows(db: aiosqlite.Connection, sql: str, rows: Sequence[Params]) -> int:
    """What ``executemany(sql, rows)`` does (every row, in order), in as few statements as
    SQLite takes; the rows changed. Not ``executemany``: it hands the GIL back and forth once
    per row, and while the event loop is busy (a flatten's thousands of trade updates) each
    hand-back waits out a switch interval (5 ms): 8,000 rows took 8 s that way, 0.09 s in
    multi-row statements. Each statement is one trip to SQLite's thread (``execute_fetchall``;
    a cursor closed from the loop is a second one): the count comes from ``total_changes``,
    read while the caller holds the journal's lock, so nothing else runs on the connection."""
    if len(rows) != 1 and multi_row_sql(sql, 1) is None:
        async with db.executemany(sql, rows) as cursor:
            return cursor.rowcount
    before = db.total_changes
    if len(rows) == 1:
        await db.execute_fetchall(sql, rows[0])
        return db.total_changes - before
    per = max(1, min(_MAX_ROWS, _MAX_PARAMS // max(1, len(rows[0]))))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        statement = multi_row_sql(sql, len(chunk))
        assert statement is not None
        await db.execute_fetchall(statement, [value for row in chunk for value in row])
    return db.total_changes - before


class Writer:
    def __init__(self, path: Path, behind: WriteBehind, now: Callable[[], str]) -> None:
        self.path = path
        self._behind = behind
        self._now = now
        self.db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._inflight: set[asyncio.Task[Any]] = set()
        self.writable = True
        self.on_writable_change: Callable[[bool, str], None] | None = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self.db is None:
            raise RuntimeError(f"journal {self.path} is closed")
        return self.db

    async def close(self) -> None:
        """Write what is pending (within a bound) and close the connection."""
        db = self.db
        if db is None:
            return
        try:
            await self._final_flush()
        finally:
            self.db = None
            # aiosqlite's worker thread is not a daemon: it must be stopped or the process
            # never exits. close() stops it even when closing the file fails.
            try:
                await db.close()
            except sqlite3.Error:
                log.exception("journal %s: error closing the database", self.path)

    async def _final_flush(self) -> None:
        try:
            async with asyncio.timeout(_CLOSE_FLUSH_TIMEOUT):
                for _ in range(ISOLATE_AFTER):
                    if await self.locked(self.write_pending):
                        break
                while self._inflight:
                    await asyncio.wait(set(self._inflight))
        except TimeoutError:
            log.error("journal %s: timed out writing pending rows at close", self.path)
        if self._behind.pending:
            log.error(
                "journal %s: closed with %d rows not written", self.path, self._behind.pending
            )

    # ----- the writable flag ----------------------------------------------------------------

    def outcome(self, exc: sqlite3.Error | None) -> None:
        """Hear how a write went: None when rows were committed, else SQLite's error."""
        if exc is None:
            self._behind.probe = None
            if not self.writable:
                self._set_writable(True, f"journal {self.path}: writes work again")
        elif not is_row_error(exc) and self.writable:
            now = self._now()
            self._behind.probe = (schema.UPSERT_META, (PROBE_KEY, now, now))
            self._set_writable(False, f"journal {self.path} cannot be written: {exc}")

    def _set_writable(self, writable: bool, reason: str) -> None:
        self.writable = writable
        (log.info if writable else log.error)("%s", reason)
        if self.on_writable_change is not None:
            try:
                self.on_writable_change(writable, reason)
            except Exception:
                log.exception("journal %s: on_writable_change failed", self.path)

    # ----- transactions ---------------------------------------------------------------------

    async def locked(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` under the lock in its own task: cancelling the caller cannot stop it
        between BEGIN and COMMIT (the write completes; only the caller stops waiting)."""

        async def run() -> T:
            async with self._lock:
                return await work()

        task = asyncio.create_task(run())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Nobody will see this task's outcome: a failure must at least reach the log.
            task.add_done_callback(self._log_orphan_failure)
            raise

    def _log_orphan_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("journal %s: a write whose caller went away failed", self.path, exc_info=exc)

    async def durable(self, sql: str, row: Params) -> int:
        """Commit one row (a trading state, an audit, a counter, a meta value, a quarantined
        update) after the held rows, in the same transaction when they can be written; its
        row count. Raises ``JournalWriteError`` when it cannot be committed.

        Not the events, orders and snapshots waiting: they are written behind, by the flusher
        or with the next fill (which must never be on disk without the events before it).
        Carrying them made every durable row wait for them: at the end of a flatten of
        2,000 positions the trading state, the flatten's mark and the command's audit each
        carried the thousands of rows its trade updates had left pending."""

        async def work() -> int:
            batch = self._behind.take_held()
            if batch:
                try:
                    counts = await self.transaction([*batch.writes(), (sql, [row])])
                except sqlite3.Error:
                    # Pending rows must never stop a fill or a halt from being recorded.
                    log.warning(
                        "journal %s: writing %d pending rows failed; writing the durable row alone",
                        self.path,
                        len(batch),
                        exc_info=True,
                    )
                else:
                    self._behind.written(batch)
                    self.outcome(None)
                    return counts[-1]
            try:
                counts = await self.transaction([(sql, [row])])
            except sqlite3.Error as exc:
                self.outcome(exc)
                raise JournalWriteError(f"journal {self.path} cannot be written: {exc}") from exc
            self.outcome(None)
            return counts[0]

        return await self.locked(work)

    async def write_pending(self) -> bool:
        """Write the write-behind rows (the caller holds the lock); False if they stay."""
        return await self._behind.write(self.transaction, self.outcome)

    async def write_some(self, limit: int) -> bool:
        """``write_pending`` of at most ``limit`` rows (the flusher's transactions)."""
        return await self._behind.write(self.transaction, self.outcome, limit=limit)

    async def transaction(self, writes: Iterable[tuple[str, Sequence[Params]]]) -> list[int]:
        """One BEGIN IMMEDIATE ... COMMIT; returns each statement's row count."""
        counts: list[int] = []
        async with self.begin() as db:
            for sql, rows in writes:
                counts.append(await write_rows(db, sql, rows))
        return counts

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE; COMMIT when the block ends, ROLLBACK if it raises."""
        db = self.conn
        # One trip to SQLite's thread each (``async with db.execute`` is two: the cursor's
        # close is another); behind a busy loop every trip waits for a turn of it.
        await db.execute_fetchall("BEGIN IMMEDIATE")
        try:
            yield db
            await db.execute_fetchall("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await db.execute_fetchall("ROLLBACK")
            raise

    async def read(
        self, sql: str, params: Sequence[object], *, flush_first: bool = False
    ) -> list[sqlite3.Row]:
        async def work() -> list[sqlite3.Row]:
            if flush_first:
                # Read-your-writes; a failed flush is logged and retried by the flusher.
                await self.write_pending()
            try:
                return list(await self.conn.execute_fetchall(sql, params))
            except sqlite3.Error as exc:
                raise JournalReadError(f"journal {self.path} cannot be read: {exc}") from exc

        return await self.locked(work)
