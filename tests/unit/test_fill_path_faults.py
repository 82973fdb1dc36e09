"""The fill path when the journal cannot write: the book stays right, nothing is lost."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain import Fill, OrderStatus, Side
from engine.errors import JournalWriteError
from engine.events import FillReceived
from engine.orders import Order
from tests.support.app import wait_for
from tests.support.journal_faults import allow_writes, refuse_writes
from tests.unit.engine_stubs import (
    DAY,
    SYMBOLS,
    ExecParts,
    ScriptedStrategy,
    build_engine,
    history_bars,
    ny,
    priced_execution,
    request,
)

D = Decimal


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[ExecParts]:
    async with priced_execution(tmp_path) as p:
        yield p


async def test_fill_when_journal_cannot_write_then_applied_once_and_journaled_when_writes_work(
    parts: ExecParts,
) -> None:
    await parts.execution.submit(request("c1"))
    await refuse_writes(parts.journal)
    updates = [parts.updates.get_nowait() for _ in range(parts.updates.qsize())]
    for update in updates:
        await parts.execution.on_trade_update(update)
    await parts.execution.drain()
    [received] = parts.of(FillReceived)
    fill = received.fill

    assert parts.portfolio.qty("AAPL") == D(10)
    assert parts.portfolio.cash == D(99_000)
    order = parts.orders.get("c1")
    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert parts.journal.writable is False
    assert parts.execution.fills_held == 1
    # The same execution again (a stream repeat, a recovery) while writes still fail.
    assert await parts.execution.apply_fill(fill) is False
    for update in updates:
        await parts.execution.on_trade_update(update)
    await parts.execution.drain()
    assert parts.portfolio.qty("AAPL") == D(10)
    assert len(parts.of(FillReceived)) == 1

    await allow_writes(parts.journal)
    await wait_for(lambda: parts.journal.writable and parts.journal.pending == 0, within=10)
    assert [f.execution_id for f in await parts.journal.load_fills()] == [fill.execution_id]
    assert await parts.execution.apply_fill(fill) is False
    assert parts.portfolio.qty("AAPL") == D(10)


async def test_fill_when_already_journaled_and_journal_then_fails_then_repeat_is_not_applied(
    parts: ExecParts,
) -> None:
    await parts.execution.submit(request("c1"))
    await parts.pump()
    [received] = parts.of(FillReceived)
    await refuse_writes(parts.journal)

    assert await parts.execution.apply_fill(received.fill) is False

    assert parts.portfolio.qty("AAPL") == D(10)
    assert parts.execution.fills_held == 0


async def test_restart_when_a_fill_was_applied_but_never_written_then_recovered_from_broker(
    tmp_path: Path,
) -> None:
    history = {s: history_bars(s, [98, 99, 100, 99, 100], ny(11)) for s in SYMBOLS}
    first = await build_engine(tmp_path, history=history)
    await first.engine.start()
    try:
        await refuse_writes(first.journal)
        first.strategy.queued["AAPL"] = Side.BUY
        await first.deliver("AAPL", ny(11), 100)
        assert first.engine.portfolio.qty("AAPL") == D(10)
        assert first.engine.execution.fills_held == 1
    finally:
        # Down while writes still fail: the held fill never reaches the file, as after a
        # crash.
        with contextlib.suppress(JournalWriteError):
            await first.engine.stop()
    assert [(p.symbol, p.qty) for p in first.broker.exchange.positions()] == [("AAPL", D(10))]

    second = await build_engine(tmp_path, history=history, strategy=ScriptedStrategy())
    await second.engine.start()
    try:
        result = second.engine.last_reconcile
        assert result is not None
        assert result.fills_recovered == 1
        assert second.engine.portfolio.qty("AAPL") == D(10)
        assert second.engine.portfolio.cash == D(99_000)
        fills = await second.journal.load_fills()
        assert [f.client_order_id for f in fills] == [fills[0].client_order_id]
        assert second.engine.execution.fills_held == 0
    finally:
        await second.engine.stop()


async def test_fill_burst_when_applied_then_few_group_commits_and_each_on_disk_when_announced(
    parts: ExecParts,
) -> None:
    for i in range(40):
        await parts.execution.submit(request(f"burst-{i}", qty=1), checked=False)
    on_disk_when_announced: list[bool] = []

    def check(event: FillReceived) -> None:
        with contextlib.closing(sqlite3.connect(parts.journal.path)) as db:
            found = db.execute(
                "SELECT 1 FROM fills WHERE execution_id = ?", (event.fill.execution_id,)
            ).fetchall()
        on_disk_when_announced.append(found == [(1,)])

    parts.bus.subscribe(FillReceived, check)
    before = parts.journal.fill_commits

    assert await parts.pump() == 80  # new + fill for each

    assert parts.portfolio.qty("AAPL") == D(40)
    assert on_disk_when_announced == [True] * 40
    assert [e.fill.client_order_id for e in parts.of(FillReceived)] == [
        f"burst-{i}" for i in range(40)
    ]
    # Fills are applied while a commit is in flight (it takes several hops to the database
    # thread), so they share commits: far fewer than one each.
    assert parts.journal.fill_commits - before <= 20
    assert len(await parts.journal.load_fills()) == 40


async def test_day_trade_counter_when_journal_cannot_write_then_written_once_writes_work(
    parts: ExecParts,
) -> None:
    for cid, side in (("open-1", Side.BUY), ("close-1", Side.SELL)):
        order = Order.from_request(request(cid, side=side), parts.clock.now())
        order.status, order.broker_order_id = OrderStatus.SUBMITTED, f"b-{cid}"
        parts.orders.add(order)
    await parts.execution.apply_fill(
        Fill("e1", "open-1", "b-open-1", "AAPL", Side.BUY, D(10), D(100), ny(10))
    )
    await refuse_writes(parts.journal)

    await parts.execution.apply_fill(
        Fill("e2", "close-1", "b-close-1", "AAPL", Side.SELL, D(10), D(101), ny(10, 30))
    )
    assert parts.days.day_trades_5d() == 1

    await allow_writes(parts.journal)
    await wait_for(lambda: parts.journal.writable and parts.journal.pending == 0, within=10)
    assert await parts.journal.get_counter(DAY, "day_trades") == "1"


async def test_prune_when_closed_orders_are_old_then_their_ids_are_forgotten_too(
    parts: ExecParts,
) -> None:
    old = Order.from_request(request("old-1"), ny(9, day=DAY - timedelta(days=4)))
    old.status = OrderStatus.FILLED
    live = Order.from_request(request("live-1"), ny(9, day=DAY - timedelta(days=4)))
    for order in (old, live):
        parts.orders.add(order)
        parts.execution.known_ids.add(order.client_order_id)

    assert parts.execution.prune(ny(9) - timedelta(days=3)) == 1

    assert "old-1" not in parts.orders
    assert "old-1" not in parts.execution.known_ids
    assert "live-1" in parts.execution.known_ids  # still open: kept
