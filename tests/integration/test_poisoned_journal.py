"""A journal holding rows start-up cannot read or apply (a negative fill, a garbled fill, a
garbled order): the next start, a real process, reports each in one line, quarantines it once
and comes up with the broker's book, never a traceback."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from tests.integration.test_restart import printed_positions, sim_positions
from tests.support.app import sim_settings, start_app
from tests.support.console_proc import ConsoleProcess

pytestmark = pytest.mark.slow

FILL_SQL = (
    "INSERT INTO fills (execution_id, client_order_id, broker_order_id, symbol, side, qty,"
    " price, commission, ts, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, '0', ?, ?)"
)


def poison(db_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        ts, cid, symbol = db.execute(
            "SELECT ts, client_order_id, symbol FROM fills ORDER BY id DESC LIMIT 1"
        ).fetchone()
        # The poisoned fills belong to no order, so each order row stays readable on its own.
        db.execute(FILL_SQL, ("p-neg", "ghost", "b", symbol, "buy", "-5", "100", ts, ts))
        db.execute(FILL_SQL, ("p-garbled", "ghost", "b", symbol, "buy", "lots", "100", ts, ts))
        db.execute("UPDATE orders SET status = 'bogus' WHERE client_order_id = ?", (cid,))


def quarantined(db_path: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return list(db.execute("SELECT source, reason FROM quarantine ORDER BY id"))


async def test_start_when_journal_rows_poisoned_then_one_line_each_quarantined_and_book_right(
    tmp_path: Path,
) -> None:
    settings = sim_settings(tmp_path)
    first = await start_app(settings)
    await first.stop()
    db_path = settings.storage.db_path
    poison(db_path)
    data_dir = settings.storage.data_dir
    expected = sim_positions(data_dir)

    env = {"SIM_REPLAY_SPEED": "max", "SIM_REPLAY_CSV": str(settings.sim.replay_csv)}
    second = await ConsoleProcess.start(data_dir, env)
    await second.poll_status_until("replay finished")
    await second.send("!positions")
    await second.send("!quit")
    code, _, err = await second.finish()
    kept = quarantined(db_path)
    third = await start_app(settings)  # the same rows again: reported, not quarantined twice
    await third.stop()

    assert code == 0, err
    assert "Traceback" not in err
    assert printed_positions(second.lines) == expected
    skipped = [line for line in second.lines if "start-up skipped a" in line]
    assert len(skipped) == 3, "\n".join(second.lines[:40])
    assert sorted(source for source, _ in kept) == ["journal_fill", "journal_fill", "journal_order"]
    assert any("InvalidOperation" in reason for _, reason in kept)
    assert quarantined(db_path) == kept
