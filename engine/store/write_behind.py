"""The journal's write-behind buffer: events, order upserts and equity snapshots, plus the
durable rows the journal could not write (held until writes work again).

Rows wait in memory and a flusher task writes them every ``flush_interval`` seconds, or sooner
once ``batch_size`` rows wait, up to ``batch_size`` rows a transaction (the next one at once
while more wait), so the hot path never waits on disk. The buffer knows nothing of the
connection: the journal hands it a transaction runner and the flush to run (under the
journal's lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.backoff import backoff_delay
from engine.store import schema

log = logging.getLogger(__name__)

Params = tuple[object, ...]
Writes = list[tuple[str, Sequence[Params]]]
Transaction = Callable[[Iterable[tuple[str, Sequence[Params]]]], Awaitable[list[int]]]
Outcome = Callable[[sqlite3.Error | None], None]
HeldKey = tuple[str, str]

# Errors that are the row's (or the code's) fault, not the storage's: retrying cannot help.
_ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def is_row_error(exc: sqlite3.Error) -> bool:
    """True when SQLite refused the row itself (a constraint, a type), False when it could not
    write at all (disk full, read-only, I/O error, locked, corrupt, missing table)."""
    return isinstance(exc, _ROW_ERRORS)


# A batch the database refuses this many times for a reason that is not the disk (a
# constraint, a type) is written row by row and the refused rows are logged and set aside,
# so one bad row cannot block the journal forever. Storage errors are retried without limit.
ISOLATE_AFTER = 3
_MAX_BACKOFF = 5.0
_STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Batch:
    """A snapshot of the pending rows; ``*_upto`` are the last sequence numbers it holds."""

    held: list[tuple[HeldKey, str, Params]]
    events: list[Params]
    events_upto: int
    orders: list[tuple[str, Params]]
    snapshots: list[Params]
    snapshots_upto: int

    def __len__(self) -> int:
        return len(self.held) + len(self.events) + len(self.orders) + len(self.snapshots)

    def writes(self) -> Writes:
        writes: Writes = []
        for _, sql, row in self.held:
            if writes and writes[-1][0] == sql:
                writes[-1] = (sql, [*writes[-1][1], row])
            else:
                writes.append((sql, [row]))
        if self.events:
            writes.append((schema.INSERT_EVENT, self.events))
        if self.orders:
            writes.append((schema.UPSERT_ORDER, [row for _, row in self.orders]))
        if self.snapshots:
            writes.append((schema.INSERT_SNAPSHOT, self.snapshots))
        return writes


class WriteBehind:
    """Pending rows plus the flusher that writes them."""

    def __init__(
        self, path: Path, *, flush_interval: float, batch_size: int, max_pending: int
    ) -> None:
        if flush_interval <= 0 or batch_size < 1 or max_pending < batch_size:
            raise ValueError("journal: flush_interval > 0 and 1 <= batch_size <= max_pending")
        self._path = path
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._seq = itertools.count(1)
        self._events: deque[tuple[int, Params]] = deque()
        self._orders: dict[str, Params] = {}
        self._snapshots: deque[tuple[int, Params]] = deque()
        self._held: dict[HeldKey, tuple[str, Params]] = {}
        self.probe: tuple[str, Params] | None = None
        """A row to write when nothing is pending, to learn when failed writes work again."""
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False
        self.failures = 0
        """Failed write attempts since the last successful one."""
        self.dropped = 0
        """Rows given up on (buffer overflow or refused by the database)."""

    # ----- the buffer -----------------------------------------------------------------------

    def add_event(self, row: Params) -> None:
        self._events.append((next(self._seq), row))
        self._queued(self._events)

    def add_order(self, client_order_id: str, row: Params) -> None:
        """Later upserts of the same order replace earlier ones."""
        self._orders[client_order_id] = row
        self._queued(None)

    def add_snapshot(self, row: Params) -> None:
        self._snapshots.append((next(self._seq), row))
        self._queued(self._snapshots)

    def hold(self, key: HeldKey, sql: str, row: Params) -> bool:
        """Keep a row that must not be lost (a durable row that could not be written, or one
        whose caller does not wait for it): never dropped, it goes first in the next batch.
        False (and no change) when ``key`` is already held."""
        if key in self._held:
            return False
        self._held[key] = (sql, row)
        self._queued(None)
        return True

    def keep_latest(self, key: HeldKey, sql: str, row: Params) -> None:
        """Like ``hold``, but a later row for ``key`` replaces the one still waiting."""
        self._held[key] = (sql, row)
        self._queued(None)

    def holds(self, key: HeldKey) -> bool:
        return key in self._held

    def has_order(self, client_order_id: str) -> bool:
        return client_order_id in self._orders

    @property
    def pending(self) -> int:
        return len(self._held) + len(self._events) + len(self._orders) + len(self._snapshots)

    def _queued(self, buffer: deque[tuple[int, Params]] | None) -> None:
        if buffer is not None and self.pending > self._max_pending:
            buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "journal %s: %d rows waiting, cannot write them; dropped %d oldest so far",
                    self._path,
                    self.pending,
                    self.dropped,
                )
        # While writes fail the flusher backs off; appends must not wake it into a busy loop.
        if self.pending >= self._batch_size and self.failures == 0:
            self._wake.set()

    def take(self, limit: int | None = None) -> Batch:
        """Every pending row; with ``limit``, every held row and then the oldest others up to
        ``limit`` rows in all."""
        held = [(key, sql, row) for key, (sql, row) in self._held.items()]
        room = None if limit is None else max(0, limit - len(held))
        events = list(itertools.islice(self._events, room))
        if room is not None:
            room -= len(events)
        orders = list(itertools.islice(self._orders.items(), room))
        if room is not None:
            room -= len(orders)
        snapshots = list(itertools.islice(self._snapshots, room))
        return Batch(
            held=held,
            events=[row for _, row in events],
            events_upto=events[-1][0] if events else 0,
            orders=orders,
            snapshots=[row for _, row in snapshots],
            snapshots_upto=snapshots[-1][0] if snapshots else 0,
        )

    def take_held(self) -> Batch:
        """Only the held rows (durable rows that must go before any later one), not the
        events, orders and snapshots: what a durable row other than a fill carries."""
        held = [(key, sql, row) for key, (sql, row) in self._held.items()]
        return Batch(held=held, events=[], events_upto=0, orders=[], snapshots=[], snapshots_upto=0)

    def written(self, batch: Batch) -> None:
        """Forget what ``batch`` held: it is committed."""
        # Rows may have been appended (or the oldest dropped) while the batch was being
        # written: remove exactly what was written, by sequence number and identity.
        while self._events and self._events[0][0] <= batch.events_upto:
            self._events.popleft()
        while self._snapshots and self._snapshots[0][0] <= batch.snapshots_upto:
            self._snapshots.popleft()
        for cid, row in batch.orders:
            if self._orders.get(cid) is row:
                del self._orders[cid]
        for key, _, row in batch.held:
            if (held := self._held.get(key)) is not None and held[1] is row:
                del self._held[key]
        self.failures = 0

    # ----- writing --------------------------------------------------------------------------

    async def write(
        self, transaction: Transaction, outcome: Outcome, *, limit: int | None = None
    ) -> bool:
        """Write every pending row (``limit``: at most that many, see ``take``) in one
        transaction (the caller holds the journal's lock). False when the rows could not be
        written; they stay pending. ``outcome`` hears of each attempt: the error, or None when
        rows were written."""
        batch = self.take(limit)
        writes = batch.writes()
        if not writes:
            if self.probe is None:
                return True
            writes = [(self.probe[0], [self.probe[1]])]
        try:
            await transaction(writes)
        except sqlite3.Error as exc:
            outcome(exc)
            self.failures += 1
            if self.failures == 1 or self.failures % 20 == 0:
                log.error(
                    "journal %s: writing %d rows failed (attempt %d); keeping them",
                    self._path,
                    len(batch),
                    self.failures,
                    exc_info=exc,
                )
            if self.failures >= ISOLATE_AFTER and is_row_error(exc):
                await self._write_one_by_one(batch, transaction, outcome)
                return True
            return False
        self.written(batch)
        outcome(None)
        return True

    async def _write_one_by_one(
        self, batch: Batch, transaction: Transaction, outcome: Outcome
    ) -> None:
        for sql, rows in batch.writes():
            for row in rows:
                try:
                    await transaction([(sql, [row])])
                except sqlite3.Error as exc:
                    if not is_row_error(exc):
                        outcome(exc)
                        # The storage failed meanwhile: keep the whole batch for later (an event
                        # or snapshot written just before may then be written twice; fills,
                        # orders and meta rows are idempotent).
                        return
                    self.dropped += 1
                    log.exception("journal %s: the database refuses row %r", self._path, row)
                else:
                    outcome(None)
        self.written(batch)

    # ----- the flusher ----------------------------------------------------------------------

    def start(self, flush: Callable[[], Awaitable[bool]]) -> None:
        """Run ``flush`` (which takes the lock and calls ``write`` with ``limit=batch_size``)
        whenever rows are due: in transactions of ``batch_size`` rows, so that a durable write
        (a trading state, an audit row) queued behind the flusher during a burst waits for
        one small transaction, not for everything the burst left."""
        self._flusher = asyncio.create_task(self._run(flush), name="journal-flusher")

    async def stop(self) -> None:
        task, self._flusher = self._flusher, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=_STOP_TIMEOUT)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, flush: Callable[[], Awaitable[bool]]) -> None:
        while not self._stopping:
            delay = backoff_delay(
                self.failures + 1,
                base_s=self._flush_interval,
                cap_s=max(_MAX_BACKOFF, self._flush_interval),
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping or not (self.pending or self.probe):
                continue
            try:
                await flush()
                if self.pending >= self._batch_size and self.failures == 0:
                    self._wake.set()  # a burst: the next transaction at once
            except Exception:
                # Never let the flusher die: rows stay pending and the next round retries.
                self.failures += 1
                log.exception("journal %s: flusher error", self._path)
