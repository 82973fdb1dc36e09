"""The engine's start-up restore: what the journal remembers, where broker recovery starts,
the trading day, and the strategies' warm-up history.

``restore`` runs the steps in order (journal restore, recovery start, reconcile at start, day
start, loss-halt day, warm-up) over the engine's public parts; each step is a plain coroutine
over the parts it needs.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from engine.clock import trading_day
from engine.journal_owner import JournalOwnerError, claim_account, claim_mode
from engine.market_hours import MarketHours
from engine.order_book import OrderBook
from engine.portfolio import Portfolio
from engine.risk import Cause, StateRecord
from engine.store.journal import Journal

if TYPE_CHECKING:
    from engine.engine import TradingEngine

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN = "clean_shutdown"
START_EQUITY = "start_equity"
DAY_TRADES = "day_trades"


async def restore(engine: TradingEngine) -> None:
    """Everything a start does before the engine's loops run."""
    e = engine
    await claim_mode(e.journal, e.mode, e.storage.data_dir)
    e.clean_last_shutdown = await mark_running(e.journal)
    last = await last_state(e.journal)
    if last is not None:
        e.state.restore(last)
    await e.broker.connect()
    await e.market.refresh()
    account = await e.broker.get_account()
    try:
        await claim_account(e.journal, e.mode, account.id, e.storage.data_dir)
    except JournalOwnerError:
        # The refused run never ran: the owner's next start must not see a crash.
        await unmark_running(e.journal, e.clean_last_shutdown)
        raise
    last_fill_ts = await restore_book(
        e.journal, e.portfolio, e.orders, e.execution.known_ids, e.clock.now()
    )
    since = recovery_start(e.market, e.orders, e.clock.now(), last_fill_ts)
    e.last_reconcile = await e.control.reconcile("start-up", since=since, at_startup=True)
    e.account = e.last_reconcile.account
    if e.account is not None:
        e.buying_power.anchor(e.account)
    await open_day(e, trading_day(e.clock.now()))
    e.control.loss_halt_day = await loss_halt_day(e.journal, e.clock.now())
    await e.bars.warm_up(e.feed)


async def mark_running(journal: Journal) -> bool | None:
    """Whether the last run stopped cleanly (None: first start); this run counts as unclean
    until ``stop`` says otherwise."""
    clean = await journal.get_meta(CLEAN_SHUTDOWN)
    await journal.set_meta(CLEAN_SHUTDOWN, "false")
    return None if clean is None else clean == "true"


async def unmark_running(journal: Journal, clean: bool | None) -> None:
    """Undo ``mark_running`` (``clean`` is what it returned)."""
    if clean is not None:
        await journal.set_meta(CLEAN_SHUTDOWN, "true" if clean else "false")


async def mark_clean_stop(journal: Journal) -> None:
    await journal.set_meta(CLEAN_SHUTDOWN, "true")


async def last_state(journal: Journal) -> StateRecord | None:
    last = await journal.last_trading_state()
    if last is None:
        return None
    return StateRecord(last.state, last.actor, last.reason, last.cause, last.ts)


async def restore_book(
    journal: Journal,
    portfolio: Portfolio,
    orders: OrderBook,
    known_ids: set[str],
    now: datetime,
) -> datetime | None:
    """Rebuild the book from our own journal (positions, orders, ids already used); returns
    the time of the last journaled fill."""
    fills = await journal.load_fills()
    for fill in fills:
        portfolio.apply_fill(fill)
    since = now - timedelta(days=5)
    orders.add_all(await journal.load_orders(since=since))
    orders.add_all(await journal.load_orders(open_only=True))
    known_ids.update(await journal.client_order_ids_since(since))
    known_ids.update(fill.client_order_id for fill in fills)
    return fills[-1].ts if fills else None


def recovery_start(
    market: MarketHours, orders: OrderBook, now: datetime, last_fill_ts: datetime | None
) -> datetime:
    """Where to ask the broker for executions: from the last one we know (or the day's start),
    and no later than the oldest order still open."""
    session = market.session(trading_day(now))
    start = session.open - timedelta(hours=6) if session else now - timedelta(days=1)
    if last_fill_ts is not None:
        start = min(start, last_fill_ts - timedelta(minutes=1))
    open_created = [o.created_at for o in orders.open_orders()]
    return min([start, *open_created])


async def open_day(engine: TradingEngine, day: date) -> None:
    """Open trading day ``day``: its start equity (journaled once, so a restart keeps it), the
    orders and day trades already counted, and closed orders older than a few days pruned."""
    journal, days, portfolio, orders = engine.journal, engine.days, engine.portfolio, engine.orders
    account, now = engine.account, engine.clock.now()
    stored = await journal.get_counter(day, START_EQUITY)
    if stored is not None:
        start_equity = Decimal(stored)
    elif account is not None and days.day is None:
        start_equity = account.last_equity
    else:
        start_equity = portfolio.equity
    if stored is None:
        await journal.set_counter(day, START_EQUITY, str(start_equity))
    portfolio.start_day(day, start_equity)
    # Closed orders older than a few days stay in the journal, not in memory.
    orders.prune(now - timedelta(days=3))
    orders_today = sum(
        1
        for o in orders.created_since(now - timedelta(days=1))
        if trading_day(o.created_at) == day and o.strategy != "flatten"
    )
    days.start(day, orders_today)
    trades = await journal.get_counter(day, DAY_TRADES)
    if trades is not None:
        days.load_day_trades({day: int(trades)})
    if account is not None:
        days.broker_day_trades = account.daytrade_count


async def loss_halt_day(journal: Journal, now: datetime) -> date | None:
    """Today, if the loss limit halted on it: it halts once per trading day, restarts
    included, so a trader who lifted today's loss-limit halt with an override is not halted
    again by the next tick."""
    today = trading_day(now)
    for record in await journal.trading_state_history(limit=100):
        if trading_day(record.ts) < today:
            break
        if record.cause == Cause.LOSS_LIMIT:
            return today
    return None
