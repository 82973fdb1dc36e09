"""The engine end to end on the simulator: replay -> strategy -> risk -> orders -> fills."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.domain import ZERO, money
from engine.portfolio import Portfolio
from engine.store.journal import Journal
from tests.support.app import seed_position, sim_settings, start_app


async def test_replay_when_strategy_trades_then_flatten_leaves_sim_flat_and_journal_agrees(
    tmp_path: Path,
) -> None:
    settings = sim_settings(tmp_path)
    app = await start_app(settings)
    exchange = app.broker.exchange  # type: ignore[attr-defined]
    try:
        assert app.engine.signals >= 3, "the strategy should trade the sample morning"
        assert len(await app.journal.load_fills()) >= 3
        await seed_position(app, "MSFT", -7)  # a short too, so flatten covers both directions

        report = await app.commands.flatten("test")

        assert report.flat, report
        assert exchange.positions() == []
        assert exchange.open_orders() == []
        assert app.engine.portfolio.positions() == []
    finally:
        await app.stop()

    # Rebuild the book from the journal alone and compare with the simulator's account.
    journal = await Journal.open(settings.storage.db_path, app.clock)
    try:
        fills = await journal.load_fills()
    finally:
        await journal.close()
    book = Portfolio(cash=settings.sim.starting_cash)
    for fill in fills:
        book.apply_fill(fill)
    account = exchange.account()
    assert book.positions() == []
    assert money(book.cash) == money(account.cash)
    assert money(book.equity) == money(account.equity)
    realized = book.summary().realized - book.summary().commissions
    assert money(realized) == money(account.equity - settings.sim.starting_cash)
    assert {f.execution_id for f in fills} == {
        e.id for e in exchange.executions_since(fills[0].ts.replace(year=2000))
    }
    assert all(f.qty > ZERO for f in fills)
    assert sum(f.commission for f in fills) > Decimal(0)
