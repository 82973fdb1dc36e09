"""Opening the journal file, and why it cannot be opened, in one line that names the file and
what to do.

Checked before SQLite touches the file: a file that is not SQLite at all, one cut short (the
header says how many pages it should hold), and an empty (0-byte) file in a data dir that
already holds other state (the simulator's account, the health file): that is no first start,
and starting afresh there would forget a saved HALT. SQLite's own refusals while opening
(garbage, damage, a read-only place, a full disk, an I/O error) are turned into the same kind
of line.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import aiosqlite

from engine.errors import JournalOpenError
from engine.store import schema

log = logging.getLogger(__name__)

_MAGIC = b"SQLite format 3\x00"
_OPENED = "journal_opened_at"
_HEADER = 100

_DAMAGED = (
    "move it aside to start a new journal (positions are then rebuilt from the broker, but the "
    "saved trading state and history are gone) or restore it from a backup"
)
_NOT_WRITABLE = "check that {dir} is writable (permissions, a read-only mount or volume)"
_FULL = "free some space on that disk"


async def connect(path: Path, applied_at: datetime, stamp: str) -> tuple[aiosqlite.Connection, int]:
    """Open (creating or upgrading) the file: WAL and the connection pragmas, the migrations,
    and one write, so a file that can be read but not written is refused at start. Returns the
    connection and the schema version the file was at. Raises ``JournalOpenError``, or
    ``schema.SchemaError`` for a file written by newer code."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise dir_error(path, exc) from exc
    try:
        # Autocommit mode: the journal issues BEGIN IMMEDIATE / COMMIT itself.
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise open_error(path, exc) from exc
    try:
        db.row_factory = sqlite3.Row
        mode = await schema.configure(db)
        if mode != "wal":
            log.warning("journal %s: SQLite refused WAL mode (got %r)", path, mode)
        before = await schema.migrate(db, applied_at)
        async with db.execute(schema.UPSERT_META, (_OPENED, stamp, stamp)):
            pass
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise open_error(path, exc) from exc
        cause = exc.__cause__
        # A migration that failed for the storage's sake (not its script's) is that refusal.
        storage = (
            isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode != sqlite3.SQLITE_ERROR
        )
        if isinstance(exc, schema.SchemaError) and storage:
            assert isinstance(cause, sqlite3.Error)
            raise open_error(path, cause) from exc
        raise
    return db, before


def check_file(path: Path, other_state: Sequence[Path]) -> None:
    """Raise ``JournalOpenError`` for a journal file that must not be opened as it is."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise JournalOpenError(f"journal {path} cannot be read: {exc.strerror}") from exc
    if size == 0:
        held = [p.name for p in other_state if p.exists()]
        if held:
            raise JournalOpenError(
                f"journal {path} is empty (0 bytes) but {path.parent} already holds "
                f"{', '.join(held)}: this is no first start, and starting afresh would lose a "
                "saved HALT. Restore the journal from a backup, or move the data dir's "
                "contents aside for a fresh start"
            )
        return
    try:
        with path.open("rb") as file:
            header = file.read(_HEADER)
    except OSError as exc:
        raise JournalOpenError(f"journal {path} cannot be read: {exc.strerror}") from exc
    if len(header) < _HEADER or not header.startswith(_MAGIC):
        raise JournalOpenError(f"journal {path} is not an SQLite database: {_DAMAGED}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid only when written by the same change as the change counter.
    if header[92:96] == header[24:28] and size < pages * page_size:
        raise JournalOpenError(
            f"journal {path} is cut short ({size} of {pages * page_size} bytes): {_DAMAGED}"
        )


def open_error(path: Path, exc: sqlite3.Error) -> JournalOpenError:
    """SQLite refused to open, upgrade or write ``path``: the one line to show."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        advice = f"it is damaged or not a journal ({exc}): {_DAMAGED}"
    elif code in (
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_AUTH,
    ):
        advice = f"it cannot be written ({exc}): {_NOT_WRITABLE.format(dir=path.parent)}"
    elif code == sqlite3.SQLITE_FULL:
        advice = f"the disk is full ({exc}): {_FULL}"
    elif code == sqlite3.SQLITE_IOERR:
        advice = f"the disk reports an I/O error ({exc}): check the disk, then try again"
    elif code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        advice = f"another process holds it ({exc}): is a second bot running on this data dir?"
    else:
        advice = f"SQLite refused it ({exc})"
    return JournalOpenError(f"journal {path} cannot be opened: {advice}")


def dir_error(path: Path, exc: OSError) -> JournalOpenError:
    """The data dir for ``path`` could not be created."""
    return JournalOpenError(
        f"journal {path} cannot be created ({exc.strerror}): "
        f"{_NOT_WRITABLE.format(dir=path.parent)}"
    )


def remove_if_empty(path: Path) -> None:
    """Remove a journal this start created and left empty (and its WAL files)."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
