import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.clock import SystemClock
from engine.domain import TradingState
from engine.store.journal import Journal

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD = REPO_ROOT / "tests" / "integration" / "journal_child.py"
HALT_REASON = "sigkill test: loss limit"
FILL_ACKS_WANTED = 200
HALT_AFTER = 100


async def read_acks_until(
    stdout: asyncio.StreamReader, done: Callable[[set[str], bool], bool], within: float
) -> tuple[list[str], bool]:
    """Read ACK lines until ``done(fill_acks, halted)``; fail at the deadline or on EOF."""
    deadline = time.monotonic() + within
    fills: list[str] = []
    halted = False
    while not done(set(fills), halted):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(fills)} fill ACKs (halted={halted}) before the deadline"
        line = (await asyncio.wait_for(stdout.readline(), remaining)).decode().strip()
        assert line, f"child exited early after {len(fills)} fill ACKs"
        if line.startswith("ACK fill "):
            fills.append(line.removeprefix("ACK fill "))
        elif line == "ACK state HALTED":
            halted = True
    return fills, halted


@pytest.mark.slow
@pytest.mark.parametrize("group", [1, 25], ids=["one-by-one", "grouped"])
async def test_sigkill_when_durable_calls_acked_then_all_survive_none_doubled_file_intact(
    tmp_path: Path, group: int
) -> None:
    """With ``group`` 25 the kill lands during group commits (25 concurrent fills and a
    duplicate each): no acknowledged fill lost, none stored twice."""
    db_path = tmp_path / "journal.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(db_path),
        str(HALT_AFTER),
        str(group),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        acked, halted = await read_acks_until(
            child.stdout, lambda f, h: len(f) >= FILL_ACKS_WANTED and h, within=60
        )
        os.kill(child.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    assert halted

    journal = await Journal.open(db_path, SystemClock(), flush_interval=3600)
    try:
        stored = Counter(fill.execution_id for fill in await journal.load_fills())
        last = await journal.last_trading_state()
    finally:
        await journal.close()

    missing = [eid for eid in acked if eid not in stored]
    assert missing == []
    assert {eid: n for eid, n in stored.items() if n != 1} == {}
    assert last is not None
    assert (last.state, last.reason) == (TradingState.HALTED, HALT_REASON)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
