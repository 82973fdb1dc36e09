"""TradingEngine: start-up (journal, reconcile, state, warm-up), the worker's guards, the
loss-limit auto-halt, settle() and stop()."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.clock import SystemClock
from engine.domain import OrderRequest, OrderStatus, OrderType, Side, TradingState
from engine.errors import BrokerRejected, BrokerUnavailable
from engine.events import TradingStateChanged
from engine.store.journal import Journal
from tests.support.app import wait_for
from tests.unit.engine_stubs import (
    SYMBOLS,
    EngineParts,
    ScriptedStrategy,
    build_engine,
    history_bars,
    make_exchange,
    ny,
    request,
)

D = Decimal
HISTORY_CLOSES = [98, 99, 100, 99, 100]


def history(end: Any = None) -> dict[str, list[Any]]:
    return {s: history_bars(s, HISTORY_CLOSES, end or ny(11)) for s in SYMBOLS}


async def started(tmp_path: Path, **kw: Any) -> EngineParts:
    kw.setdefault("history", history(kw.get("start")))
    p = await build_engine(tmp_path, **kw)
    await p.engine.start()
    return p


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[EngineParts]:
    p = await started(tmp_path)
    try:
        yield p
    finally:
        await p.engine.stop()


async def buy_aapl(p: EngineParts, minute: Any = None, price: int = 100) -> None:
    p.strategy.queued["AAPL"] = Side.BUY
    await p.deliver("AAPL", minute or ny(11), price)
    assert p.engine.portfolio.qty("AAPL") == D(10)


async def run_and_stop(p: EngineParts, body: Callable[[], Awaitable[None]]) -> None:
    try:
        await body()
    finally:
        await p.engine.stop()


# ---- start-up --------------------------------------------------------------------------


async def test_start_when_restarted_then_positions_orders_ids_and_halt_restored(
    tmp_path: Path,
) -> None:
    first = await started(tmp_path)

    async def trade_and_halt() -> None:
        await buy_aapl(first)
        first.broker.submit_error = BrokerRejected("not shortable")
        refused = await first.engine.execution.submit(request("refused-1", side=Side.SELL, qty=20))
        assert refused.order is not None
        assert refused.order.status is OrderStatus.REJECTED  # only our journal knows its id
        await first.engine.halt("trader", "lunch", keep_positions=True)

    await run_and_stop(first, trade_and_halt)
    [cid] = [
        o.client_order_id
        for o in first.engine.orders.created_since(ny(0))
        if o.strategy == ScriptedStrategy.name
    ]

    second = await started(tmp_path)

    async def check() -> None:
        engine = second.engine
        position = engine.portfolio.position("AAPL")
        assert position is not None
        assert (position.qty, position.avg_price) == (D(10), D(100))
        assert engine.state.state is TradingState.HALTED
        assert (engine.state.record.actor, engine.state.record.reason) == ("trader", "lunch")
        assert cid in engine.execution.known_ids
        assert "refused-1" in engine.execution.known_ids  # a replayed signal stays refused
        restored = engine.orders.get(cid)
        assert restored is not None
        assert restored.status is OrderStatus.FILLED
        assert engine.last_reconcile is not None
        assert engine.last_reconcile.clean
        assert engine.clean_last_shutdown is True
        assert engine.portfolio.cash == D(99_000)

    await run_and_stop(second, check)


async def test_start_when_broker_filled_an_order_while_down_then_fill_recovered(
    tmp_path: Path,
) -> None:
    first = await started(tmp_path)
    await run_and_stop(first, lambda: buy_aapl(first))
    # While we are down, someone sells 4 AAPL by hand on the account.
    outside = make_exchange(first.clock, tmp_path / "sim.jsonl")
    first.clock.set(ny(11, 30))
    outside.submit("AAPL", Side.SELL, 4, client_order_id="by-hand-1")

    second = await started(tmp_path, start=ny(11, 31))

    async def check() -> None:
        result = second.engine.last_reconcile
        assert result is not None
        assert result.fills_recovered == 1
        assert result.clean  # recovered as a fill, not patched over as drift
        assert second.engine.portfolio.qty("AAPL") == D(6)
        fills = await second.journal.load_fills()
        assert [f.client_order_id for f in fills][-1] == "by-hand-1"

    await run_and_stop(second, check)


async def test_start_when_down_for_days_then_fills_since_the_last_known_one_recovered(
    tmp_path: Path,
) -> None:
    first = await started(tmp_path)
    await run_and_stop(first, lambda: buy_aapl(first))
    outside = make_exchange(first.clock, tmp_path / "sim.jsonl")
    outside.on_price("AAPL", D(100), ny(15))
    outside.submit("AAPL", Side.SELL, 4, client_order_id="by-hand-1")
    thursday = date(2026, 3, 12)

    second = await started(tmp_path, start=ny(11, day=thursday))

    async def check() -> None:
        result = second.engine.last_reconcile
        assert result is not None
        assert result.fills_recovered == 1
        assert result.clean

    await run_and_stop(second, check)


async def test_start_when_warmup_is_history_plus_one_then_first_live_bar_trades(
    tmp_path: Path,
) -> None:
    # Warm-up is exactly ``warmup_bars``: 5 history bars + the first live bar make 6, so a
    # signal on that bar is an order (it used to take one bar more).
    strategy = ScriptedStrategy(warmup=len(HISTORY_CLOSES) + 1)
    p = await started(tmp_path, strategy=strategy)

    async def check() -> None:
        assert strategy.calls == ["AAPL"] * 5 + ["MSFT"] * 5  # each saw its history
        assert p.engine.portfolio.last_price("AAPL") == D(100)
        assert not p.engine.bars.queue.pending  # warm-up does not count as an update
        strategy.queued["AAPL"] = Side.BUY

        await p.deliver("AAPL", ny(11), 101)

        assert strategy.calls[-1] == "AAPL"
        assert p.engine.portfolio.qty("AAPL") == D(10)

    await run_and_stop(p, check)


async def test_start_when_one_bar_short_of_warmup_then_first_live_bar_does_not_trade(
    tmp_path: Path,
) -> None:
    strategy = ScriptedStrategy(warmup=len(HISTORY_CLOSES) + 2)
    p = await started(tmp_path, strategy=strategy)

    async def check() -> None:
        strategy.queued["AAPL"] = Side.BUY

        await p.deliver("AAPL", ny(11), 101)

        assert "AAPL" not in strategy.queued  # the strategy asked...
        assert p.engine.signals == 0  # ...but had not seen its 7 bars yet
        assert p.engine.portfolio.qty("AAPL") == D(0)

    await run_and_stop(p, check)


# ---- the bar path's guards: the strategy sees every bar, the order is dropped ----------


async def test_bar_when_halted_then_marks_price_strategy_sees_it_and_no_order(
    running: EngineParts,
) -> None:
    await running.engine.halt("trader", "pause", keep_positions=True)
    seen = len(running.strategy.calls)
    running.strategy.queued["AAPL"] = Side.BUY

    await running.deliver("AAPL", ny(11), 103)

    assert running.strategy.calls[seen:] == ["AAPL"]  # its state stays current
    assert running.engine.signals == 0
    assert running.engine.portfolio.last_price("AAPL") == D(103)


async def test_bar_when_flatten_running_then_no_order_and_trading_after_it_ends(
    running: EngineParts,
) -> None:
    gate = asyncio.Event()
    running.broker.close_all_gate = gate
    flatten = asyncio.get_running_loop().create_task(running.engine.flatten("trader"))
    await wait_for(lambda: running.broker.close_all_calls == 1)
    running.strategy.queued["AAPL"] = Side.BUY

    await running.deliver("AAPL", ny(11), 101)

    assert running.engine.signals == 0
    gate.set()
    report = await asyncio.wait_for(flatten, timeout=5)
    assert report.flat
    running.strategy.queued["AAPL"] = Side.BUY
    await running.deliver("AAPL", ny(11, 1), 101)
    assert running.engine.signals == 1


async def test_bar_when_symbol_has_open_order_then_only_that_symbol_cannot_trade(
    running: EngineParts,
) -> None:
    resting = OrderRequest("rest-1", "AAPL", Side.BUY, D(5), OrderType.LIMIT, D(97), strategy="t")
    result = await running.engine.execution.submit(resting)
    assert result.order is not None
    assert result.order.is_open
    running.strategy.queued.update(AAPL=Side.BUY, MSFT=Side.BUY)

    await running.deliver("AAPL", ny(11), 100)
    await running.deliver("MSFT", ny(11), 100)

    assert running.engine.signals == 1
    assert running.engine.portfolio.qty("MSFT") == D(10)
    assert running.engine.portfolio.qty("AAPL") == D(0)


# ---- loss limit ------------------------------------------------------------------------


async def test_worker_when_day_loss_limit_hit_then_auto_halted_and_flattened_once(
    tmp_path: Path,
) -> None:
    p = await started(tmp_path, risk={"daily_loss_limit": D(100)})

    async def check() -> None:
        engine = p.engine
        await buy_aapl(p)

        await p.deliver("AAPL", ny(11, 1), 80)  # 10 x -20: day P&L -200
        await wait_for(
            lambda: engine.state.state is TradingState.HALTED and not engine.flattener.running
        )
        await p.deliver("AAPL", ny(11, 2), 70)

        record = engine.state.record
        assert (record.actor, record.cause) == ("risk", "loss_limit")
        assert record.reason == "daily loss limit hit: day P&L -$200.00 <= -$100.00"
        assert engine.portfolio.qty("AAPL") == D(0)
        halts = [e for e in p.of(TradingStateChanged) if e.new is TradingState.HALTED]
        assert len(halts) == 1

    await run_and_stop(p, check)


async def breach_loss_limit_then_override(p: EngineParts) -> None:
    """Lose past the limit (auto-halt and flatten), lift the halt with an override, then hold
    a position again (the gate refuses new risk, so through an exit-style unchecked order)."""
    engine = p.engine
    await buy_aapl(p)
    await p.deliver("AAPL", ny(11, 1), 80)
    await wait_for(
        lambda: engine.state.state is TradingState.HALTED and not engine.flattener.running
    )
    await engine.state.resume("trader", "I know", override=True)
    await engine.execution.submit(request("manual-2", qty=5), checked=False)
    await engine.settle()


async def test_resume_with_override_when_loss_still_breached_then_no_second_auto_halt(
    tmp_path: Path,
) -> None:
    p = await started(tmp_path, risk={"daily_loss_limit": D(100)})

    async def check() -> None:
        engine = p.engine
        await breach_loss_limit_then_override(p)
        await p.deliver("AAPL", ny(11, 2), 79)
        # An auto-halt runs as a background task: let any that was started finish first.
        await wait_for(lambda: not engine._spawned)

        assert engine.portfolio.qty("AAPL") == D(5)
        assert engine.state.state is TradingState.ACTIVE
        halts = [e for e in p.of(TradingStateChanged) if e.new is TradingState.HALTED]
        assert len(halts) == 1

    await run_and_stop(p, check)


async def test_restart_when_loss_limit_halt_was_overridden_today_then_no_second_auto_halt(
    tmp_path: Path,
) -> None:
    first = await started(tmp_path, risk={"daily_loss_limit": D(100)})

    async def breach_and_override() -> None:
        await breach_loss_limit_then_override(first)

    await run_and_stop(first, breach_and_override)
    second = await started(tmp_path, risk={"daily_loss_limit": D(100)}, start=ny(11, 3))

    async def check() -> None:
        engine = second.engine
        await second.deliver("AAPL", ny(11, 3), 79)  # still past the limit, as before
        await wait_for(lambda: not engine._spawned)

        assert engine.state.state is TradingState.ACTIVE
        assert engine.portfolio.qty("AAPL") == D(5)

    await run_and_stop(second, check)


# ---- settle and stop -------------------------------------------------------------------


async def test_settle_when_bar_triggers_order_then_returns_only_after_fill_applied(
    running: EngineParts,
) -> None:
    running.strategy.queued["AAPL"] = Side.BUY
    running.clock.set(ny(11, 1))
    running.engine.on_bar(history_bars("AAPL", [100], ny(11, 1))[0])

    await running.engine.settle()

    assert running.engine.portfolio.qty("AAPL") == D(10)
    assert running.engine.orders.open_orders() == []


async def test_stop_when_called_twice_then_idempotent_and_journal_closed_cleanly(
    tmp_path: Path,
) -> None:
    p = await started(tmp_path)

    await p.engine.stop()
    await p.engine.stop()

    with pytest.raises(RuntimeError, match="closed"):
        p.journal.append_event("x", {}, ny(11))
    journal = await Journal.open(tmp_path / "journal.sqlite", SystemClock())
    try:
        assert await journal.get_meta("clean_shutdown") == "true"
    finally:
        await journal.close()


async def test_start_when_last_run_was_killed_then_unclean_shutdown_reported(
    tmp_path: Path,
) -> None:
    journal = await Journal.open(tmp_path / "journal.sqlite", SystemClock())
    await journal.set_meta("clean_shutdown", "false")  # what start() leaves until stop()
    await journal.close()

    p = await started(tmp_path)

    async def check() -> None:
        assert p.engine.clean_last_shutdown is False

    await run_and_stop(p, check)


async def test_stop_when_start_failed_half_way_then_next_boot_sees_an_unclean_shutdown(
    tmp_path: Path,
) -> None:
    p = await build_engine(tmp_path, history=history())
    p.broker.account_error = BrokerUnavailable("503 service unavailable")
    with pytest.raises(BrokerUnavailable):
        await p.engine.start()

    await p.engine.stop()

    journal = await Journal.open(tmp_path / "journal.sqlite", SystemClock())
    try:
        assert await journal.get_meta("clean_shutdown") == "false"
    finally:
        await journal.close()


async def test_start_when_last_state_row_unreadable_then_halted_with_the_reason(
    tmp_path: Path,
) -> None:
    first = await build_engine(tmp_path)
    await first.journal.record_trading_state(TradingState.HALTED, "alice", "news", "manual", ny(10))
    await first.journal.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.sqlite")) as db, db:
        db.execute("UPDATE trading_state SET ts = 'yesterday-ish'")

    p = await build_engine(tmp_path)
    await p.engine.start()
    try:
        record = p.engine.state.record
    finally:
        await p.engine.stop()

    assert (record.state, record.actor) == (TradingState.HALTED, "system")
    assert record.reason.startswith("the last trading-state row cannot be read (ValueError")
