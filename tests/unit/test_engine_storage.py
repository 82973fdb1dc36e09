"""A journal that cannot write (real SQLite refusals on the journal's own connection): no new
risk from that moment, halt and flatten still work from memory, everything is written and the
engine's own REDUCING lifted once the journal can write again."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from engine.app import EngineApp
from engine.domain import OrderRequest, Side, TradingState
from engine.errors import TradingStateError
from engine.events import EngineError, Event, Notice, Severity
from tests.support.app import sim_settings, start_app, wait_for
from tests.support.journal_faults import allow_writes, refuse_writes


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[EngineApp]:
    a = await start_app(sim_settings(tmp_path))
    assert a.engine.portfolio.positions(), "the strategy should hold positions by noon"
    try:
        yield a
    finally:
        await allow_writes(a.journal)
        await a.stop()


def events(app: EngineApp) -> list[Event]:
    seen: list[Event] = []
    app.bus.subscribe(Event, seen.append)
    return seen


def stored_states(app: EngineApp) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(app.settings.storage.db_path)) as db:
        rows = db.execute("SELECT state, actor, cause FROM trading_state ORDER BY id").fetchall()
    return [tuple(r) for r in rows]


async def test_flatten_when_journal_cannot_write_then_reducing_in_memory_and_critical_alert(
    app: EngineApp,
) -> None:
    seen = events(app)
    await refuse_writes(app.journal, "readonly")

    report = await app.commands.flatten("alice")
    await wait_for(lambda: app.engine.state.record.cause == "storage")

    assert report.flat
    assert app.engine.portfolio.positions() == []
    assert app.engine.state.state is TradingState.REDUCING
    critical = [e for e in seen if isinstance(e, EngineError) and e.component == "journal"]
    assert [e.severity for e in critical] == [Severity.CRITICAL]
    assert "no new positions" in critical[0].message
    opening = OrderRequest("after-full-1", "MSFT", Side.BUY, Decimal(1), strategy="t")
    refused = await app.engine.execution.submit(opening)
    assert refused.order is None  # no new entries from the moment the journal failed
    with pytest.raises(TradingStateError, match="The journal cannot be written"):
        await app.commands.resume("alice")


async def test_journal_when_writable_again_then_states_written_fills_recovered_and_lifted(
    app: EngineApp,
) -> None:
    seen = events(app)
    fills_before = app.engine.execution.fills_applied
    await refuse_writes(app.journal, "readonly")
    await app.commands.flatten("alice")
    await wait_for(lambda: app.engine.state.record.cause == "storage")

    await allow_writes(app.journal)
    await wait_for(lambda: app.engine.state.state is TradingState.ACTIVE)

    assert app.engine.state.unpersisted == 0
    # The flusher may hit the refusal before the flatten does: then the flatten finds the
    # journal's REDUCING already in force and sets none of its own.
    assert stored_states(app)[-2:] == [
        ("REDUCING", "journal", "storage"),
        ("ACTIVE", "journal", "manual"),
    ]
    with contextlib.closing(sqlite3.connect(app.settings.storage.db_path)) as db:
        stored_fills = db.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
    assert stored_fills == app.engine.execution.fills_applied > fills_before
    healed = [n for n in seen if isinstance(n, Notice) and n.kind == "storage"]
    assert healed[-1].text.startswith("✅ The journal can be written again")
    assert healed[-1].text.endswith("Trading is ACTIVE.")


async def test_halt_when_journal_read_only_then_halted_and_persisted_once_writable(
    app: EngineApp,
) -> None:
    await refuse_writes(app.journal, "readonly")

    result = await app.commands.halt("alice", "storm", keep_positions=True)
    before_writable = stored_states(app)
    await allow_writes(app.journal)
    await wait_for(lambda: app.engine.state.unpersisted == 0)

    assert result.record.state is TradingState.HALTED
    assert app.engine.state.state is TradingState.HALTED  # the journal's recovery keeps it
    assert ("HALTED", "alice", "manual") not in before_writable
    assert ("HALTED", "alice", "manual") in stored_states(app)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the journal alone; skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_flatten_when_the_disk_really_is_full_then_flat_and_trading_heals_after(
    tmp_path: Path, small_disk: Path
) -> None:
    # Only the journal lives on the small disk (an absolute name wins over the data dir).
    settings = sim_settings(tmp_path, storage={"db_name": str(small_disk / "trader.sqlite")})
    app = await start_app(settings)
    filler = small_disk / "filler"
    try:
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)

        report = await app.commands.flatten("alice")
        await wait_for(lambda: app.engine.state.record.cause == "storage")
        filler.unlink()
        await wait_for(lambda: app.engine.state.state is TradingState.ACTIVE, within=15)
    finally:
        await app.stop()

    assert report.flat
    assert ("ACTIVE", "journal", "manual") in stored_states(app)
