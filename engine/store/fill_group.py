"""Fills committed in groups: every fill queued while a commit runs goes into the next one.

A caller queues its fill and gets a future that resolves only after the COMMIT holding its
row (True: new, False: that execution id was already stored), so a fill acknowledged is a
fill on disk, while a burst of fills (a flatten's closes, a recovery) costs a few
transactions instead of one each. A group goes in one multi-row ``INSERT ... ON CONFLICT DO
NOTHING RETURNING``, after the pending write-behind rows (the file never holds a fill
without the events appended before it)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from functools import partial

from engine.errors import JournalWriteError
from engine.store import schema
from engine.store.write_behind import Params, WriteBehind, Writes, is_row_error
from engine.store.writer import Writer, write_rows

log = logging.getLogger(__name__)

# Rows per INSERT: 10 parameters each keeps a statement far below SQLite's default limit of
# 32,766 parameters.
_CHUNK = 1000
_ROW = "(" + ", ".join("?" * len(schema.FILL_COLUMNS.split(","))) + ")"

Queued = tuple[str, Params, "asyncio.Future[bool]"]


def _insert_sql(rows: int) -> str:
    return (
        f"INSERT INTO fills ({schema.FILL_COLUMNS}) VALUES {', '.join([_ROW] * rows)} "
        "ON CONFLICT (execution_id) DO NOTHING RETURNING execution_id"
    )


class FillCommitter:
    def __init__(self, writer: Writer, behind: WriteBehind) -> None:
        self._writer = writer
        self._behind = behind
        self._queue: list[Queued] = []
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions that committed fills (a burst shares few)."""

    def submit(self, execution_id: str, row: Params) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((execution_id, row, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="journal-fill-commits"
            )
        return future

    async def drain(self) -> None:
        """Wait until every queued fill is committed (or has failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await self._settle(group)
            except BaseException as exc:  # cancelled at shutdown, or a bug: nobody may hang
                _fail(group, exc)
                if not isinstance(exc, Exception):
                    raise
                log.exception("journal: committing %d fills failed", len(group))

    async def _settle(self, group: list[Queued]) -> None:
        try:
            new = await self._writer.locked(partial(self._commit, group))
        except JournalWriteError as exc:
            cause = exc.__cause__
            if len(group) > 1 and isinstance(cause, sqlite3.Error) and is_row_error(cause):
                # A row the database refuses must not fail the others: each on its own.
                for one in group:
                    await self._settle([one])
            else:
                _fail(group, exc)
            return
        for execution_id, _, future in group:
            first = execution_id in new
            new.discard(execution_id)  # a second copy in the same group is no new fill
            if not future.done():
                future.set_result(first)

    async def _commit(self, group: Sequence[Queued]) -> set[str]:
        """One transaction (the caller holds the lock): the ids that were new."""
        rows = [row for _, row, _ in group]
        batch = self._behind.take()
        if batch:
            try:
                new = await self._insert(batch.writes(), rows)
            except sqlite3.Error:
                # Pending rows must never stop a fill from being recorded.
                log.warning("journal: pending rows failed; committing the fills alone")
            else:
                self._behind.written(batch)
                self._writer.outcome(None)
                return new
        try:
            new = await self._insert([], rows)
        except sqlite3.Error as exc:
            self._writer.outcome(exc)
            raise JournalWriteError(
                f"journal {self._writer.path} cannot be written: {exc}"
            ) from exc
        self._writer.outcome(None)
        return new

    async def _insert(self, before: Writes, rows: list[Params]) -> set[str]:
        new: set[str] = set()
        async with self._writer.begin() as db:
            for sql, params in before:
                await write_rows(db, sql, params)
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                flat = [value for row in chunk for value in row]
                for (execution_id,) in await db.execute_fetchall(_insert_sql(len(chunk)), flat):
                    new.add(str(execution_id))
        self.commits += 1
        return new


def _fail(group: Sequence[Queued], exc: BaseException) -> None:
    for _, _, future in group:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
