"""Real SQLite write failures on a journal's own connection, switched on and off by tests.

``PRAGMA query_only`` makes SQLite refuse every write as on a read-only file (SQLITE_READONLY);
``PRAGMA max_page_count`` caps the file at its current size, so the next write that needs a
page fails exactly as on a full disk (SQLITE_FULL). Both act on the connection the journal
writes through, so nothing else is faked.
"""

from __future__ import annotations

import aiosqlite

from engine.store.journal import Journal

NO_LIMIT = 1_073_741_823  # SQLite's default max_page_count


def _connection(journal: Journal) -> aiosqlite.Connection:
    return journal._writer.conn  # test-only access to the journal's own connection


async def refuse_writes(journal: Journal, how: str = "readonly") -> None:
    """``how``: ``readonly`` (every write refused) or ``full`` (no page can be added)."""
    db = _connection(journal)
    if how == "readonly":
        await db.execute("PRAGMA query_only=1")
    elif how == "full":
        async with db.execute("PRAGMA page_count") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        await db.execute(f"PRAGMA max_page_count={int(row[0])}")
    else:
        raise ValueError(how)


async def allow_writes(journal: Journal) -> None:
    db = _connection(journal)
    await db.execute("PRAGMA query_only=0")
    await db.execute(f"PRAGMA max_page_count={NO_LIMIT}")
