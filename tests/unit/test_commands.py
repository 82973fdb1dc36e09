"""CommandService: every trader command, its result contents, and its audit trail."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.commands import MAX_REASON_CHARS, CommandService
from engine.domain import OrderRequest, OrderStatus, OrderType, Side, TradingState
from engine.errors import CommandError
from engine.events import CommandAudited
from engine.store.records import AuditRecord
from tests.support.app import wait_for
from tests.unit.engine_stubs import (
    DAY,
    SYMBOLS,
    EngineParts,
    build_engine,
    history_bars,
    ny,
)

D = Decimal


@dataclass
class Ctx:
    parts: EngineParts
    commands: CommandService

    async def last_audit(self) -> AuditRecord:
        rows = await self.parts.journal.audit_rows(limit=1)
        assert rows, "nothing was audited"
        return rows[0]

    def audited(self) -> list[CommandAudited]:
        return self.parts.of(CommandAudited)


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Ctx]:
    history = {s: history_bars(s, [100, 100, 100], ny(11)) for s in SYMBOLS}
    parts = await build_engine(tmp_path, history=history)
    await parts.engine.start()
    try:
        yield Ctx(parts, CommandService(parts.engine))
    finally:
        await parts.engine.stop()


async def hold(ctx: Ctx, symbol: str, side: Side, entry: int, mark: int) -> None:
    """Open 10 shares through the strategy at ``entry``, then mark them at ``mark``."""
    p = ctx.parts
    p.strategy.queued[symbol] = side
    await p.deliver(symbol, p.clock.now(), entry)
    await p.deliver(symbol, p.clock.now(), mark)


async def rest_limit_order(ctx: Ctx, limit: int = 97) -> None:
    """A buy limit below the market (within the gate's 5% band), so it rests."""
    resting = OrderRequest(
        "rest-1", "AAPL", Side.BUY, D(5), OrderType.LIMIT, D(limit), strategy="t"
    )
    result = await ctx.parts.engine.execution.submit(resting)
    assert result.order is not None
    assert result.order.is_open


# ---- read-only -------------------------------------------------------------------------


async def test_status_when_position_held_then_report_has_book_state_and_health(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)
    await rest_limit_order(ctx, limit=105)

    report = await ctx.commands.status("alice")

    assert (report.state, report.state_actor, report.state_cause) == (
        TradingState.ACTIVE,
        "system",
        "startup",
    )
    assert report.mode == "sim"
    assert (report.equity, report.cash) == (D(100_100), D(99_000))
    assert (report.day_pnl, report.day_pnl_pct) == (D(100), D("0.1"))
    assert (report.gross_exposure, report.net_exposure) == (D(1100), D(1100))
    assert (report.positions, report.open_orders) == (1, 1)
    assert report.market_open
    assert (report.broker.name, report.broker.ok) == ("sim", True)
    assert not report.flatten_running
    assert not report.loss_limit_locked
    assert report.now == ctx.parts.clock.now()
    row = await ctx.last_audit()
    assert (row.actor, row.command, row.args, row.ok) == ("alice", "status", "", True)
    assert row.result == "ACTIVE, equity $100,100.00, 1 position"
    [event] = ctx.audited()
    assert (event.command, event.control, event.ok) == ("status", False, True)


async def test_trades_when_position_opened_today_then_its_fill_and_one_audit_row(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)

    trades = await ctx.commands.trades("alice")

    [trade] = trades
    assert (trade.symbol, trade.side, trade.qty, trade.closing) == ("AAPL", Side.BUY, D(10), False)
    assert trade.realized_pnl == D(0)
    row = await ctx.last_audit()
    assert (row.actor, row.command, row.result) == ("alice", "trades", "1 fill")


async def test_trades_when_bought_then_sold_then_newest_first_with_realized(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)
    await hold(ctx, "AAPL", Side.SELL, entry=110, mark=110)

    sold, bought = await ctx.commands.trades("alice")

    assert (sold.side, sold.closing, sold.realized_pnl) == (Side.SELL, True, D(100))
    assert (bought.side, bought.closing) == (Side.BUY, False)
    assert sold.ts >= bought.ts


async def test_equity_when_days_given_then_snapshots_oldest_first_and_audited(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)

    points = await ctx.commands.equity("web", days=1)

    assert points
    assert [p.ts for p in points] == sorted(p.ts for p in points)
    assert points[-1].equity == D(100_100)
    row = await ctx.last_audit()
    assert (row.command, row.args, row.result) == ("equity", "1", f"{len(points)} points")


@pytest.mark.parametrize("days", [0, -1, 367])
async def test_equity_when_days_out_of_range_then_refused_and_audited(ctx: Ctx, days: int) -> None:
    with pytest.raises(CommandError, match="days must be a whole number from 1 to 366"):
        await ctx.commands.equity("web", days=days)

    assert (await ctx.last_audit()).ok is False


async def test_audit_when_commands_ran_then_newest_first_with_who_what_result(ctx: Ctx) -> None:
    await ctx.commands.status("alice")
    await ctx.commands.halt("bob", "lunch", keep_positions=True)

    halt, status = await ctx.commands.audit("carol", 2)

    assert (halt.actor, halt.command, halt.args, halt.ok) == ("bob", "halt", "keep lunch", True)
    assert halt.result == "HALTED; 0 orders cancelled"
    assert (status.actor, status.command) == ("alice", "status")
    assert halt.ts >= status.ts
    assert len(await ctx.commands.audit("carol")) == 3  # default 20: everything so far


@pytest.mark.parametrize("n", [0, 501])
async def test_audit_when_n_out_of_range_then_refused(ctx: Ctx, n: int) -> None:
    with pytest.raises(CommandError, match="n must be a whole number from 1 to 500"):
        await ctx.commands.audit("carol", n)


def audit_rows_on_disk(ctx: Ctx) -> list[tuple[object, ...]]:
    """The audit table as another process sees it (no flush first)."""
    with contextlib.closing(sqlite3.connect(ctx.parts.journal.path)) as db:
        return db.execute("SELECT command FROM audit ORDER BY id").fetchall()


async def test_audit_when_read_command_then_row_written_behind_the_reply(ctx: Ctx) -> None:
    pending = ctx.parts.journal.pending

    await ctx.commands.status("alice")

    assert audit_rows_on_disk(ctx) == []  # the reply did not wait for the disk
    assert ctx.parts.journal.pending > pending  # the row (and the event) wait in memory
    await wait_for(lambda: audit_rows_on_disk(ctx) == [("status",)])


async def test_audit_when_control_command_then_row_on_disk_before_the_reply(ctx: Ctx) -> None:
    await ctx.commands.halt("alice", "lunch", keep_positions=True)

    assert audit_rows_on_disk(ctx) == [("halt",)]


async def test_reads_when_audit_off_then_no_audit_row_and_no_echo(ctx: Ctx) -> None:
    status = await ctx.commands.status("scheduler", audit=False)
    await ctx.commands.pnl("scheduler", audit=False)
    await ctx.commands.trades("scheduler", audit=False)

    assert status.state is TradingState.ACTIVE
    assert status.last_reconcile is not None
    assert status.day is not None
    assert await ctx.parts.journal.audit_rows(limit=5) == []
    assert ctx.audited() == []


async def test_positions_when_long_and_short_held_then_values_and_pnl_per_symbol(
    ctx: Ctx,
) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)
    await hold(ctx, "MSFT", Side.SELL, entry=200, mark=190)

    views = await ctx.commands.positions("alice")

    rows = [
        (v.symbol, v.qty, v.avg_price, v.last_price, v.market_value, v.unrealized_pnl)
        for v in views
    ]
    assert rows == [  # largest absolute market value first
        ("MSFT", D(-10), D(200), D(190), D(-1900), D(100)),
        ("AAPL", D(10), D(100), D(110), D(1100), D(100)),
    ]
    assert [v.unrealized_pct for v in views] == [D(5), D(10)]
    assert (await ctx.last_audit()).result == "2 positions"


async def test_orders_when_limit_order_rests_then_listed_with_its_age(ctx: Ctx) -> None:
    await rest_limit_order(ctx)
    ctx.parts.clock.set(ny(11) + timedelta(seconds=150))

    [view] = await ctx.commands.orders("alice")

    assert (view.client_order_id, view.symbol, view.side, view.qty) == (
        "rest-1",
        "AAPL",
        Side.BUY,
        D(5),
    )
    assert (view.order_type, view.limit_price, view.status) == (
        OrderType.LIMIT,
        D(97),
        OrderStatus.SUBMITTED,
    )
    assert (view.filled_qty, view.age_s, view.strategy) == (D(0), 150.0, "t")
    assert (await ctx.last_audit()).result == "1 open order"


async def test_pnl_when_position_marked_up_then_summary_and_curve_end_at_now(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)
    last_bar_end = ctx.parts.clock.now()
    ctx.parts.clock.set(last_bar_end + timedelta(seconds=30))  # no update since: no snapshot

    report = await ctx.commands.pnl("alice")

    assert report.summary.day_pnl == D(100)
    assert report.summary.unrealized == D(100)
    *snapshots, current = report.curve
    assert current == (ctx.parts.clock.now(), D(100_100))
    assert snapshots  # the engine's own snapshots come first
    assert all(ts <= last_bar_end for ts, _ in snapshots)
    assert (await ctx.last_audit()).result == "day P&L +$100.00"


async def test_flatten_preview_when_position_and_order_open_then_what_flatten_would_do(
    ctx: Ctx,
) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)
    await rest_limit_order(ctx, limit=105)

    preview = await ctx.commands.flatten_preview("alice")

    assert [p.symbol for p in preview.positions] == ["AAPL"]
    assert (preview.open_orders, preview.gross_notional) == (1, D(1100))
    assert preview.market_open
    assert not preview.flatten_running
    assert preview.next_open == ny(9, 30, day=DAY + timedelta(days=1))
    assert ctx.parts.broker.close_all_calls == 0  # a preview changes nothing


# ---- halt ------------------------------------------------------------------------------


async def test_halt_when_keep_positions_then_orders_cancelled_positions_kept_and_audited(
    ctx: Ctx,
) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)
    await rest_limit_order(ctx, limit=105)

    result = await ctx.commands.halt("alice", "lunch break", keep_positions=True)

    assert result.record.state is TradingState.HALTED
    assert (result.record.actor, result.record.reason) == ("alice", "lunch break")
    assert (result.cancelled_orders, result.flatten) == (1, None)
    assert ctx.parts.engine.portfolio.qty("AAPL") == D(10)
    row = await ctx.last_audit()
    assert (row.command, row.args, row.ok) == ("halt", "keep lunch break", True)
    assert row.result == "HALTED; 1 orders cancelled"
    [event] = ctx.audited()
    assert (event.command, event.control) == ("halt", True)


async def test_halt_when_positions_not_kept_then_book_flattened(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=110)

    result = await ctx.commands.halt("alice", "done for today")

    assert result.flatten is not None
    assert result.flatten.flat
    assert ctx.parts.exchange.positions() == []
    assert ctx.parts.engine.state.state is TradingState.HALTED
    assert (await ctx.last_audit()).result.startswith("HALTED; 0 orders cancelled; flat in ")


async def test_halt_when_reason_blank_or_spaced_then_default_or_normalised(ctx: Ctx) -> None:
    first = await ctx.commands.halt("alice", "   ", keep_positions=True)
    second = await ctx.commands.halt("bob", "too   many\nlosses", keep_positions=True)

    assert first.record.reason == "halted by alice"
    assert (await ctx.last_audit()).args == "keep too many losses"
    # A second manual halt does not replace the first record (same cause rank).
    assert second.record.reason == "halted by alice"


async def test_halt_when_reason_too_long_then_cut_to_the_limit_and_still_halts(ctx: Ctx) -> None:
    result = await ctx.commands.halt("alice", "x" * 250, keep_positions=True)

    cut = "x" * (MAX_REASON_CHARS - 1) + "…"
    assert len(cut) == 200
    assert result.record.state is TradingState.HALTED
    assert result.record.reason == cut
    row = await ctx.last_audit()
    assert (row.args, row.ok) == ("keep " + cut, True)


# ---- resume ----------------------------------------------------------------------------


async def test_resume_when_already_active_then_refused_and_audited_as_failure(ctx: Ctx) -> None:
    with pytest.raises(CommandError, match=r"Trading is already ACTIVE\."):
        await ctx.commands.resume("alice")

    row = await ctx.last_audit()
    assert (row.command, row.ok, row.result) == ("resume", False, "Trading is already ACTIVE.")
    [event] = ctx.audited()
    assert (event.ok, event.control) == (False, True)


async def test_resume_when_flatten_running_then_refused(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=100)
    gate = asyncio.Event()
    ctx.parts.broker.close_all_gate = gate
    flatten = asyncio.get_running_loop().create_task(ctx.commands.flatten("bob"))
    await wait_for(lambda: ctx.parts.broker.close_all_calls == 1)

    with pytest.raises(CommandError, match="A flatten is running"):
        await ctx.commands.resume("alice")

    gate.set()
    assert (await asyncio.wait_for(flatten, timeout=5)).flat


async def test_resume_when_halted_by_hand_then_active_with_report(ctx: Ctx) -> None:
    await ctx.commands.halt("alice", "pause", keep_positions=True)

    report = await ctx.commands.resume("bob")

    assert report.previous is TradingState.HALTED
    assert (report.record.state, report.record.actor, report.record.reason) == (
        TradingState.ACTIVE,
        "bob",
        "resumed",
    )
    row = await ctx.last_audit()
    assert (row.command, row.args, row.result) == ("resume", "", "HALTED -> ACTIVE")


async def test_resume_when_loss_limit_halt_then_refused_unless_overridden(ctx: Ctx) -> None:
    await ctx.parts.engine.state.halt("risk", "daily loss limit hit", cause="loss_limit")

    with pytest.raises(CommandError, match="only `resume override` lifts it today"):
        await ctx.commands.resume("alice")
    refused = await ctx.last_audit()
    report = await ctx.commands.resume("alice", override=True)

    assert (refused.ok, refused.args) == (False, "")
    assert report.record.state is TradingState.ACTIVE
    assert report.record.reason == (
        "override of the loss-limit halt of 2026-03-10: resumed with loss-limit override"
    )
    row = await ctx.last_audit()
    assert (row.args, row.ok) == ("override", True)


# ---- flatten and failures --------------------------------------------------------------


async def test_flatten_when_positions_open_then_flat_report_audited_as_control(ctx: Ctx) -> None:
    await hold(ctx, "AAPL", Side.BUY, entry=100, mark=100)

    report = await ctx.commands.flatten("alice")

    assert report.flat
    assert ctx.parts.engine.state.state is TradingState.ACTIVE
    row = await ctx.last_audit()
    assert (row.command, row.ok) == ("flatten", True)
    assert row.result.startswith("flat in ")
    [event] = ctx.audited()
    assert event.control


async def test_flatten_when_unexpected_error_then_audited_as_internal_error_and_raised(
    ctx: Ctx,
) -> None:
    ctx.parts.broker.close_all_error = RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await ctx.commands.flatten("alice")

    row = await ctx.last_audit()
    assert (row.command, row.ok, row.result) == ("flatten", False, "internal error: boom")
    assert ctx.parts.engine.state.state is TradingState.ACTIVE  # REDUCING undone


async def test_record_denied_when_permission_refused_then_audited_as_control_failure(
    ctx: Ctx,
) -> None:
    await ctx.commands.record_denied("mallory", "halt", "now", "not a controller")

    row = await ctx.last_audit()
    assert (row.actor, row.command, row.args, row.ok) == ("mallory", "halt", "now", False)
    assert row.result == "denied: not a controller"
    [event] = ctx.audited()
    assert (event.control, event.ok) == (True, False)
