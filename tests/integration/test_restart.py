"""Crashes and restarts: nothing lost, nothing submitted twice, a halt stays a halt."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from engine.app import SIM_STATE_FILE
from engine.clock import NEW_YORK
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import ReplayFeed
from engine.sim.store import SimStateStore, StoredState
from tests.support.app import REPLAY_DAY, sim_settings, start_app, truncated_sample_csv
from tests.support.console_proc import ConsoleProcess

pytestmark = pytest.mark.slow


def sim_state(data_dir: Path) -> StoredState:
    stored = SimStateStore(data_dir / SIM_STATE_FILE).load()
    assert stored is not None
    return stored


def sim_positions(data_dir: Path) -> dict[str, Decimal]:
    return {
        p["symbol"]: Decimal(p["qty"])
        for p in sim_state(data_dir).account["positions"]
        if Decimal(p["qty"]) != 0
    }


def printed_positions(lines: list[str]) -> dict[str, Decimal]:
    """Parse ``AAPL +10 @ $231.97 → ...`` lines of the console's !positions output."""
    found = {}
    for line in lines:
        parts = line.split()
        if len(parts) > 3 and parts[2] == "@" and parts[1][0] in "+-":
            found[parts[0]] = Decimal(parts[1])
    return found


async def test_restart_when_killed_after_halt_then_halt_and_positions_survive(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = {"SIM_REPLAY_SPEED": "max", "SIM_REPLAY_CSV": str(truncated_sample_csv(tmp_path))}
    first = await ConsoleProcess.start(data_dir, env)
    try:
        await first.poll_status_until("replay finished")
        await first.send("!halt keep restart test")
        await first.read_until(lambda s: "HALTED by console: restart test" in s)
    finally:
        first.kill()
        await first.wait_killed()
    held = sim_positions(data_dir)
    orders_before = list(sim_state(data_dir).orders.values())
    assert held, "the strategy should hold positions by noon"

    second = await ConsoleProcess.start(data_dir, env)
    await second.send("!status")
    await second.send("!positions")
    await second.send("!quit")
    code, _, err = await second.finish()

    assert code == 0, err
    out = "\n".join(second.lines)
    assert "🔴 HALTED (by console" in out
    assert "Reason: restart test" in out
    assert printed_positions(second.lines) == held
    orders_after = list(sim_state(data_dir).orders.values())
    assert len(orders_after) == len(orders_before), "a halted engine submitted orders"
    ids = [o["client_order_id"] for o in orders_after]
    assert len(ids) == len(set(ids))


async def test_restart_when_killed_mid_replay_then_book_matches_sim_and_nothing_resubmitted(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    csv_path = str(truncated_sample_csv(tmp_path, time(13, 0)))
    slow = {"SIM_REPLAY_SPEED": "3000", "SIM_REPLAY_CSV": csv_path}
    first = await ConsoleProcess.start(data_dir, slow)
    try:
        await first.read_until(lambda s: "✅ Bought" in s or "✅ Sold" in s)
        await first.read_until(lambda s: "✅ Bought" in s or "✅ Sold" in s)
    finally:
        first.kill()
        await first.wait_killed()
    killed_orders = len(list(sim_state(data_dir).orders.values()))

    fast = {"SIM_REPLAY_SPEED": "max", "SIM_REPLAY_CSV": csv_path}
    second = await ConsoleProcess.start(data_dir, fast)
    await second.poll_status_until("replay finished")
    await second.send("!positions")
    await second.send("!quit")
    code, _, err = await second.finish()

    assert code == 0, err
    orders = list(sim_state(data_dir).orders.values())
    ids = Counter(o["client_order_id"] for o in orders)
    assert all(n == 1 for n in ids.values())
    assert len(orders) > killed_orders, "the resumed replay should trade on"
    assert printed_positions(second.lines) == sim_positions(data_dir)
    log = (data_dir / "trader.log").read_text()
    assert "simulator resumes the replay" in log
    assert "broker already had" not in log  # the engine itself knew every id it had used
    with sqlite3.connect(data_dir / "trader.sqlite") as db:
        journal_ids = {row[0] for row in db.execute("SELECT client_order_id FROM orders")}
    assert set(ids) <= journal_ids


async def test_replay_when_every_signal_regenerated_after_lost_order_rows_then_none_resubmitted(
    tmp_path: Path,
) -> None:
    settings = sim_settings(tmp_path)
    first = await start_app(settings)
    exchange = first.broker.exchange  # type: ignore[attr-defined]
    submitted = len(exchange.orders_since(datetime(2000, 1, 1, tzinfo=NEW_YORK)))
    signals = first.engine.signals
    await first.stop()
    assert submitted >= 3
    # A crash can lose write-behind order rows: only the broker remembers those orders now.
    with sqlite3.connect(settings.storage.db_path) as db:
        db.execute("DELETE FROM orders")

    second = await build_replaying_from_open(settings)
    try:
        await second.start()
        await wait_replay(second)
        again = second.broker.exchange.orders_since(  # type: ignore[attr-defined]
            datetime(2000, 1, 1, tzinfo=NEW_YORK)
        )
        # The second run starts holding the first run's noon positions, so it signals less
        # often; every signal it does make is one the first run already acted on.
        assert 1 <= second.engine.signals <= signals
        assert len(again) == submitted, "a regenerated signal was submitted again"
        assert second.engine.execution.duplicates_skipped == second.engine.signals
        assert not second.engine.last_reconcile.drifts  # type: ignore[union-attr]
    finally:
        await second.stop()


async def build_replaying_from_open(settings):  # type: ignore[no-untyped-def]
    """An app whose replay starts again at the day's open instead of resuming."""
    from engine.app import build_app

    app = await build_app(settings)
    assert settings.sim.replay_csv is not None
    open_at = datetime.combine(REPLAY_DAY, time(9, 30), NEW_YORK)
    app.engine.feed = ReplayFeed(
        load_bars_csv(settings.sim.replay_csv),
        clock=None,
        speed=0,
        replay_from=open_at,
        symbols=settings.strategy.symbols,
    )
    return app


async def wait_replay(app) -> None:  # type: ignore[no-untyped-def]
    from tests.support.app import wait_for

    await wait_for(lambda: app.engine.feed.health.finished, within=60)
    await app.engine.settle()


async def test_restart_when_sim_stopped_between_fills_then_replay_resumes_after_the_last_bar(
    tmp_path: Path,
) -> None:
    # Before: the simulator saved prices only with its next fill, so a restart resumed the
    # replay at the last fill and played the minutes since a second time (duplicate equity
    # snapshots, a !pnl chart with two interleaved curves).
    first = await start_app(sim_settings(tmp_path, until=time(12, 0)))
    fills = await first.journal.load_fills()
    await first.stop()
    last_fill = fills[-1].ts
    noon = datetime.combine(REPLAY_DAY, time(12, 0), NEW_YORK)
    assert last_fill < noon, "the sample's last fill before noon comes before the last bar"

    second = await start_app(sim_settings(tmp_path, until=time(13, 0)))
    try:
        assert isinstance(second.feed, ReplayFeed)
        resumed_at = second.feed.replay_from
        snapshots = await second.journal.equity_snapshots(noon.replace(hour=9))
    finally:
        await second.stop()

    assert resumed_at == noon  # the 11:59 bar closes at 12:00: the next bar is 12:00's
    stamps = [s.ts for s in snapshots]
    assert stamps == sorted(set(stamps)), "a snapshot time was recorded twice"
    assert stamps[-1] > noon
