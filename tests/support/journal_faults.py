"""Real storage failures for journal tests.

On a journal's own connection: ``PRAGMA query_only`` makes SQLite refuse every write as on a
read-only file (SQLITE_READONLY); ``PRAGMA max_page_count`` caps the file at its current size,
so the next write that needs a page fails exactly as on a full disk (SQLITE_FULL). Nothing
else is faked. Where the machine allows mounting, ``small_tmpfs`` gives a real small file
system to fill up or make read-only.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest

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


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount`` (created) for the block; the test is skipped
    where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    mount.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def make_read_only(mount: Path) -> None:
    """Remount a ``small_tmpfs`` read-only."""
    done = _mount("-o", "remount,ro", str(mount))
    assert done.returncode == 0, done.stderr


def fill_disk(directory: Path) -> Path:
    """Write a file until the file system has no space left; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
