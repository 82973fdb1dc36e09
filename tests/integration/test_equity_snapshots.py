"""Equity snapshots on the sample replay: each is taken once every symbol of its minute has
been marked (and the minute's orders answered), so the day's last one is the day's equity."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.app import build_app
from engine.clock import NEW_YORK
from engine.domain import Bar, Fill
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import ReplayFeed
from engine.portfolio import Portfolio
from engine.store.records import EquitySnapshot
from tests.support.app import REPLAY_DAY, sim_settings, wait_for


def _recomputed(
    snapshot: EquitySnapshot, fills: list[Fill], bars: list[Bar], cash: Decimal
) -> Portfolio:
    """The book at ``snapshot.ts`` from the journal's fills and the bars closed by then, in
    the order they happened: a bar's close, then the fills of the orders it caused (a fill
    marks its symbol at the fill's price, as the portfolio does)."""
    book = Portfolio(cash=cash)
    events: list[tuple[datetime, int, Bar | Fill]] = [
        (bar.ts + timedelta(minutes=1), 0, bar) for bar in bars
    ]
    events += [(fill.ts, 1, fill) for fill in fills]
    for ts, _, item in sorted(events, key=lambda e: (e[0], e[1])):
        if ts > snapshot.ts:
            break
        if isinstance(item, Fill):
            book.apply_fill(item)
        else:
            book.mark(item.symbol, item.close)
    return book


@pytest.mark.parametrize("slice_s", [None, 0.0], ids=["minute-in-one-call", "bar-by-bar"])
async def test_replay_when_day_ends_then_final_snapshot_equals_recomputed_equity(
    tmp_path: Path, slice_s: float | None
) -> None:
    settings = sim_settings(tmp_path, until=time(16, 0))
    app = await build_app(settings)
    if slice_s is not None:
        # The feed lets the loop run after every bar: the snapshot still waits for the minute.
        assert isinstance(app.feed, ReplayFeed)
        app.feed.slice_s = slice_s
    await app.start()
    try:
        await wait_for(lambda: app.feed.health.finished, within=60)
        await app.engine.settle()
        assert app.engine.signals >= 3, "the golden cross should trade the sample day"
        snapshots = await app.journal.equity_snapshots(since=app.clock.now() - timedelta(hours=7))
        fills = await app.journal.load_fills()
    finally:
        await app.stop()
    assert settings.sim.replay_csv is not None
    bars = load_bars_csv(settings.sim.replay_csv)

    cash = settings.sim.starting_cash

    final = snapshots[-1]
    book = _recomputed(final, fills, bars, cash)

    assert final.ts == datetime.combine(REPLAY_DAY, time(16, 0), NEW_YORK)  # the close
    assert final.equity == book.equity
    assert final.cash == book.cash
    assert final.net_exposure == book.net_exposure
    # Not only the last one: every snapshot is its minute's whole book, fills included.
    assert len(snapshots) >= 380
    for snapshot in snapshots:
        assert snapshot.equity == _recomputed(snapshot, fills, bars, cash).equity, snapshot
