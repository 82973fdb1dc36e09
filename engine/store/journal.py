"""The SQLite journal: one WAL file, one aiosqlite connection, one writer at a time.

Two kinds of writes:

* durable (fills, trading state, audit, counters, meta): the awaited call returns only after
  COMMIT. Held rows (durable rows a failed write left waiting) go first, in the same
  transaction. A fill also takes every row waiting in the write-behind buffer with it, so the
  file never holds a fill without the events appended before it; the other durable rows do
  not wait for them (``Writer.durable``).
* write-behind (events, order upserts, equity snapshots): buffered in memory and written by a
  flusher task, all pending rows in one transaction (``engine.store.write_behind``). The hot
  path never waits on disk.

Every row carries its event time and its knowledge time (``recorded_at``: the clock when the
journal call was made). Transactions, the lock and the ``writable`` flag live in
``engine.store.writer``.

A durable write SQLite cannot commit (disk full, read-only, I/O error) raises
``JournalWriteError``; ``writable`` is then False until a write succeeds again, and
``on_writable_change(writable, reason)`` hears of each change.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from functools import partial
from pathlib import Path

from engine.clock import Clock
from engine.domain import Fill, TradingState
from engine.errors import JournalWriteError
from engine.orders import Order
from engine.store import schema
from engine.store.fill_group import FillCommitter
from engine.store.opening import check_file, connect, remove_if_empty
from engine.store.records import (
    AuditRecord,
    BadRow,
    EquitySnapshot,
    EventRecord,
    QuarantineRecord,
    TradingStateRecord,
    audit_from_row,
    convert_rows,
    event_from_row,
    fill_from_row,
    fill_to_row,
    order_from_row,
    order_to_row,
    payload_to_json,
    quarantine_from_row,
    quarantine_payload,
    snapshot_from_row,
    snapshot_to_row,
    state_from_row,
    ts_to_text,
)
from engine.store.write_behind import Params, WriteBehind
from engine.store.writer import Writer

log = logging.getLogger(__name__)


class Journal:
    """The engine's durable record. Create with ``await Journal.open(...)``; always ``close()``."""

    def __init__(
        self, path: Path, clock: Clock, *, flush_interval: float, batch_size: int, max_pending: int
    ) -> None:
        self._behind = WriteBehind(
            path, flush_interval=flush_interval, batch_size=batch_size, max_pending=max_pending
        )
        self._batch_size = batch_size
        self.path = path
        self._clock = clock
        self._writer = Writer(path, self._behind, self._now)
        self._fills = FillCommitter(self._writer, self._behind)
        self._closed = False
        self._held_seq = itertools.count(1)

    @classmethod
    async def open(
        cls,
        path: Path,
        clock: Clock,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 500,
        max_pending: int = 100_000,
        other_state: Sequence[Path] = (),
    ) -> Journal:
        """Open (creating or upgrading) the journal file and start the write-behind flusher.

        ``other_state``: files whose presence means the data dir was used before; an empty
        journal beside any of them is refused. Raises ``JournalOpenError`` (one line naming
        the file and what to do) for a file that cannot be used, ``schema.SchemaError`` for
        one written by newer code.
        """
        path = Path(path)
        check_file(path, other_state)
        created = not path.exists()
        journal = cls(
            path,
            clock,
            flush_interval=flush_interval,
            batch_size=batch_size,
            max_pending=max_pending,
        )
        try:
            await journal._start()
        except BaseException:
            await journal.close()
            if created:
                remove_if_empty(path)  # so the next start is a first start again
            raise
        return journal

    async def _start(self) -> None:
        self._writer.db, before = await connect(self.path, self._clock.now(), self._now())
        if before != len(schema.MIGRATIONS):
            log.info("journal %s: schema %d -> %d", self.path, before, len(schema.MIGRATIONS))
        some = partial(self._writer.write_some, self._batch_size)
        self._behind.start(partial(self._writer.locked, some))

    async def close(self) -> None:
        """Write what is pending, stop the flusher and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._fills.drain()
            await self._behind.stop()
        finally:
            await self._writer.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def fill_commits(self) -> int:
        """Transactions that have committed fills so far (a burst shares few)."""
        return self._fills.commits

    @property
    def writable(self) -> bool:
        """False from the first write SQLite could not commit until one succeeds again."""
        return self._writer.writable

    @property
    def on_writable_change(self) -> Callable[[bool, str], None] | None:
        """Called with (writable, reason) on each change of ``writable``; must not block."""
        return self._writer.on_writable_change

    @on_writable_change.setter
    def on_writable_change(self, callback: Callable[[bool, str], None] | None) -> None:
        self._writer.on_writable_change = callback

    # ----- durable writes -------------------------------------------------------------------

    async def record_fill(self, fill: Fill) -> bool:
        """Store a fill; False (and no change) when its execution_id is already stored (or
        held). Raises ``JournalWriteError`` when it cannot be committed: see ``hold_fill``.
        Concurrent calls share one transaction (see ``commit_fill``)."""
        return await asyncio.shield(self.commit_fill(fill))

    def commit_fill(self, fill: Fill) -> asyncio.Future[bool]:
        """Queue a fill for the next group commit without waiting (``engine.store.fill_group``):
        the future resolves after the COMMIT that holds it, as ``record_fill`` would return."""
        self._check_open()
        return self._fills.submit(fill.execution_id, fill_to_row(fill, self._now()))

    def hold_fill(self, fill: Fill) -> bool:
        """Keep a fill that ``record_fill`` could not commit: it is written, before anything
        else, as soon as writes work again. False when this execution is already held."""
        self._check_open()
        key = ("fill", fill.execution_id)
        return self._behind.hold(key, schema.INSERT_FILL, fill_to_row(fill, self._now()))

    def holds_fill(self, execution_id: str) -> bool:
        return self._behind.holds(("fill", execution_id))

    async def record_trading_state(
        self, state: TradingState, actor: str, reason: str, cause: str, ts: datetime
    ) -> None:
        row = (TradingState(state).value, actor, reason, cause, ts_to_text(ts), self._now())
        await self._durable(schema.INSERT_STATE, row)

    async def record_audit(
        self, actor: str, command: str, args: str, ok: bool, result: str, ts: datetime
    ) -> None:
        await self._durable(
            schema.INSERT_AUDIT, self._audit_row(actor, command, args, ok, result, ts)
        )

    def record_audit_later(
        self, actor: str, command: str, args: str, ok: bool, result: str, ts: datetime
    ) -> None:
        """``record_audit`` written behind (read-only commands: the reply need not wait);
        never dropped, written with the next batch."""
        self._check_open()
        row = self._audit_row(actor, command, args, ok, result, ts)
        self._behind.hold(("audit", str(next(self._held_seq))), schema.INSERT_AUDIT, row)

    def _audit_row(
        self, actor: str, command: str, args: str, ok: bool, result: str, ts: datetime
    ) -> Params:
        return (actor, command, args, int(bool(ok)), result, ts_to_text(ts), self._now())

    async def quarantine(self, source: str, payload: object, reason: str, ts: datetime) -> None:
        """Keep something that cannot be applied (an update, a journal row), as received, with
        why: not applied, not lost. ``payload``: a mapping or dataclass (stored as a JSON
        object) or raw text/bytes. Never raises for a failed write: the row is then held and
        written as soon as writes work again."""
        row = (source, quarantine_payload(payload), reason, ts_to_text(ts), self._now())
        try:
            await self._durable(schema.INSERT_QUARANTINE, row)
        except JournalWriteError:
            self._behind.hold(
                ("quarantine", str(next(self._held_seq))), schema.INSERT_QUARANTINE, row
            )

    async def set_counter(self, day: date, key: str, value: str) -> None:
        await self._durable(schema.UPSERT_COUNTER, (day.isoformat(), key, value, self._now()))

    def set_counter_later(self, day: date, key: str, value: str) -> None:
        """``set_counter`` written behind: never dropped, a later value replaces one still
        waiting, and a value that cannot be written now is written once writes work."""
        self._check_open()
        row = (day.isoformat(), key, value, self._now())
        self._behind.keep_latest(("counter", f"{day}:{key}"), schema.UPSERT_COUNTER, row)

    async def set_meta(self, key: str, value: str) -> None:
        await self._durable(schema.UPSERT_META, (key, value, self._now()))

    # ----- write-behind ---------------------------------------------------------------------

    def append_event(self, kind: str, payload: Mapping[str, object], event_time: datetime) -> None:
        """Queue an event; the payload is JSON-encoded now (Decimal/datetime/enum -> str)."""
        self._check_open()
        row = (kind, payload_to_json(payload), ts_to_text(event_time), self._now())
        self._behind.add_event(row)

    def save_order(self, order: Order) -> None:
        """Queue an upsert of the order's current state (later saves replace earlier ones)."""
        self._check_open()
        self._behind.add_order(order.client_order_id, order_to_row(order, self._now()))

    def save_equity_snapshot(self, snap: EquitySnapshot) -> None:
        self._check_open()
        self._behind.add_snapshot(snapshot_to_row(snap, self._now()))

    @property
    def pending(self) -> int:
        """Write-behind rows not yet committed."""
        return self._behind.pending

    @property
    def dropped(self) -> int:
        """Write-behind rows given up on (buffer overflow or refused by the database)."""
        return self._behind.dropped

    async def flush(self) -> None:
        """Write every pending row now; rows that cannot be written stay pending."""
        self._check_open()
        await self._writer.locked(self._writer.write_pending)

    # ----- reads ----------------------------------------------------------------------------

    async def get_counter(self, day: date, key: str) -> str | None:
        rows = await self._read(schema.SELECT_COUNTER, (day.isoformat(), key))
        return str(rows[0]["value"]) if rows else None

    async def get_meta(self, key: str) -> str | None:
        rows = await self._read(schema.SELECT_META, (key,))
        return str(rows[0]["value"]) if rows else None

    async def load_fills(
        self, since: datetime | None = None, *, bad: list[BadRow] | None = None
    ) -> list[Fill]:
        """Fills in event-time order (ties in the order they were recorded), those queued for
        a group commit included. With ``bad``, a row that cannot be read is added there (row,
        why) instead of raising."""
        since_text = ts_to_text(since) if since is not None else ""
        await self._fills.drain()
        rows = await self._read(schema.SELECT_FILLS_SINCE, (since_text,), flush_first=True)
        return convert_rows(rows, fill_from_row, bad)

    async def load_orders(
        self,
        *,
        open_only: bool = False,
        since: datetime | None = None,
        bad: list[BadRow] | None = None,
    ) -> list[Order]:
        """Orders created at or after ``since`` (all if None), oldest first, with their
        execution ids from the fills table (see ``records.order_from_row``). ``bad``: as
        for ``load_fills``."""
        where, params = schema.orders_where(open_only=open_only, since=since)
        order_sql = schema.SELECT_ORDERS.format(where=where)
        fills_sql = schema.SELECT_ORDER_FILLS.format(where=where)

        async def work() -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
            # Both queries under one lock hold, so the orders and their fills agree.
            await self._writer.write_pending()
            db = self._writer.conn
            return list(await db.execute_fetchall(order_sql, params)), list(
                await db.execute_fetchall(fills_sql, params)
            )

        self._check_open()
        await self._fills.drain()
        order_rows, fill_rows = await self._writer.locked(work)
        fills_by_order: dict[str, list[sqlite3.Row]] = {}
        for row in fill_rows:
            fills_by_order.setdefault(row["client_order_id"], []).append(row)
        return convert_rows(
            order_rows,
            lambda row: order_from_row(row, fills_by_order.get(row["client_order_id"], [])),
            bad,
        )

    async def has_client_order_id(self, client_order_id: str) -> bool:
        """True if any order or fill we know of (written or pending) uses this id."""
        if self._behind.has_order(client_order_id):
            return True
        rows = await self._read(schema.SELECT_HAS_CID, (client_order_id, client_order_id))
        return bool(rows)

    async def client_order_ids_since(self, since: datetime) -> set[str]:
        """Ids of orders created, or fills executed, at or after ``since``."""
        stamp = ts_to_text(since)
        rows = await self._read(schema.SELECT_CIDS_SINCE, (stamp, stamp), flush_first=True)
        return {str(row[0]) for row in rows}

    async def last_trading_state(self) -> TradingStateRecord | None:
        history = await self.trading_state_history(limit=1)
        return history[0] if history else None

    async def trading_state_history(self, limit: int = 50) -> list[TradingStateRecord]:
        """Newest first, in the order the changes were recorded."""
        rows = await self._read(schema.SELECT_STATES, (limit,))
        return [state_from_row(row) for row in rows]

    async def quarantined(self, limit: int = 50) -> list[QuarantineRecord]:
        """What was quarantined, newest first (a row held while writes fail shows once it is
        written)."""
        rows = await self._read(schema.SELECT_QUARANTINE, (limit,), flush_first=True)
        return [quarantine_from_row(row) for row in rows]

    async def audit_rows(self, limit: int = 50) -> list[AuditRecord]:
        """Newest first (rows written behind included)."""
        rows = await self._read(schema.SELECT_AUDIT, (limit,), flush_first=True)
        return [audit_from_row(row) for row in rows]

    async def equity_snapshots(self, since: datetime) -> list[EquitySnapshot]:
        """Snapshots at or after ``since``, oldest first."""
        rows = await self._read(schema.SELECT_SNAPSHOTS, (ts_to_text(since),), flush_first=True)
        return [snapshot_from_row(row) for row in rows]

    async def events(self, kind: str | None = None, limit: int = 100) -> list[EventRecord]:
        """Newest first, optionally only one kind."""
        if kind is None:
            rows = await self._read(schema.SELECT_EVENTS, (limit,), flush_first=True)
        else:
            rows = await self._read(schema.SELECT_EVENTS_OF_KIND, (kind, limit), flush_first=True)
        return [event_from_row(row) for row in rows]

    # ----- machinery ------------------------------------------------------------------------

    def _now(self) -> str:
        # Knowledge time: the wall clock's readings never repeat, so none is remembered.
        return ts_to_text.once(self._clock.now(), field="clock.now()")

    def _check_open(self) -> None:
        if self._closed or self._writer.db is None:
            raise RuntimeError(f"journal {self.path} is closed")

    async def _durable(self, sql: str, row: Params) -> int:
        self._check_open()
        return await self._writer.durable(sql, row)

    async def _read(
        self, sql: str, params: Sequence[object], *, flush_first: bool = False
    ) -> list[sqlite3.Row]:
        self._check_open()
        return await self._writer.read(sql, params, flush_first=flush_first)
