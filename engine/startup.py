"""The engine's start-up restore: what the journal remembers, where broker recovery starts,
the trading day, and the strategies' warm-up history.

``restore`` runs the steps in order (journal restore, recovery start, reconcile at start, day
start, warm-up) over the engine's public parts; each step is a plain coroutine
over the parts it needs. Start-up never dies on a journal row: a fill or order row it cannot
read or apply is reported in one line (log and a CRITICAL ``EngineError``), kept in the
journal's quarantine and skipped; the broker's view then corrects the book (reconcile). An
unreadable last trading state starts HALTED, the safe side.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from engine.bus import EventBus
from engine.clock import Clock, trading_day
from engine.domain import TradingState
from engine.events import EngineError, Severity
from engine.journal_owner import JournalOwnerError, claim_account, claim_mode
from engine.market_hours import MarketHours
from engine.order_book import OrderBook
from engine.portfolio import Portfolio
from engine.risk import Cause, StateRecord
from engine.store.journal import Journal
from engine.store.records import BadRow, quarantine_payload

if TYPE_CHECKING:
    from engine.engine import TradingEngine

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN = "clean_shutdown"
START_EQUITY = "start_equity"
DAY_TRADES = "day_trades"
UNREADABLE = (ValueError, ArithmeticError, KeyError, TypeError)
"""What reading a malformed journal row raises (bad enum, number, time or column)."""


class SetAside:
    """Journal rows start-up cannot use: each is reported in one line and quarantined (once:
    a row already in the quarantine is not added again at the next start)."""

    def __init__(self, journal: Journal, bus: EventBus, clock: Clock) -> None:
        self._journal = journal
        self._bus = bus
        self._clock = clock
        self._items: list[tuple[str, object, str]] = []

    def add(self, source: str, payload: object, reason: str) -> None:
        self._items.append((source, payload, reason))

    def add_rows(self, source: str, rows: list[BadRow]) -> None:
        for row, reason in rows:
            self.add(source, row, reason)

    async def report(self) -> int:
        """Report and quarantine what was set aside; returns how many."""
        if not self._items:
            return 0
        known = {(q.source, q.payload) for q in await self._journal.quarantined(limit=1000)}
        for source, payload, reason in self._items:
            what = source.removeprefix("journal_")
            message = (
                f"start-up skipped a {what} row it cannot apply ({reason}); kept in quarantine"
            )
            log.error("%s: %s", message, quarantine_payload(payload))
            self._bus.publish(
                EngineError(
                    ts=self._clock.now(),
                    component="journal",
                    message=message,
                    severity=Severity.CRITICAL,
                )
            )
            if (source, quarantine_payload(payload)) not in known:
                await self._journal.quarantine(source, payload, reason, self._clock.now())
        count = len(self._items)
        self._items.clear()
        return count


async def restore(engine: TradingEngine) -> None:
    """Everything a start does before the engine's loops run."""
    e = engine
    await claim_mode(e.journal, e.mode, e.storage.data_dir)
    e.clean_last_shutdown = await mark_running(e.journal)
    aside = SetAside(e.journal, e.bus, e.clock)
    last = await last_state(e.journal, e.clock.now())
    e.state.restore(last, loss_halt_day=await loss_halt_day(e.journal, e.clock.now()))
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
        e.journal, e.portfolio, e.orders, e.execution.known_ids, e.clock.now(), aside
    )
    await aside.report()
    since = recovery_start(e.market, e.orders, e.clock.now(), last_fill_ts)
    e.last_reconcile = await e.control.reconcile("start-up", since=since, at_startup=True)
    e.account = e.last_reconcile.account
    if e.account is not None:
        e.buying_power.anchor(e.account)
    await open_day(e, trading_day(e.clock.now()))
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


async def last_state(journal: Journal, now: datetime) -> StateRecord | None:
    """The state the journal last acknowledged; HALTED when that row cannot be read (a halt
    must never be lost to a damaged row: a person resumes once they have looked)."""
    try:
        last = await journal.last_trading_state()
        if last is None:
            return None
        return StateRecord(last.state, last.actor, last.reason, Cause(last.cause), last.ts)
    except UNREADABLE as exc:
        reason = f"the last trading-state row cannot be read ({type(exc).__name__}: {exc})"
        log.error("start-up: %s; starting HALTED", reason)
        return StateRecord(TradingState.HALTED, "system", reason, Cause.STARTUP, now)


async def restore_book(
    journal: Journal,
    portfolio: Portfolio,
    orders: OrderBook,
    known_ids: set[str],
    now: datetime,
    aside: SetAside,
) -> datetime | None:
    """Rebuild the book from our own journal (positions, orders, ids already used); returns
    the time of the last journaled fill. Rows that cannot be read or applied go ``aside``."""
    bad: list[BadRow] = []
    fills = await journal.load_fills(bad=bad)
    aside.add_rows("journal_fill", bad)
    for fill in fills:
        known_ids.add(fill.client_order_id)
        try:
            portfolio.apply_fill(fill)
        except ValueError as exc:  # the portfolio refuses it and changes nothing
            aside.add("journal_fill", fill, str(exc))
    since = now - timedelta(days=5)
    for query in ({"since": since}, {"open_only": True}):
        bad = []
        orders.add_all(await journal.load_orders(**query, bad=bad))
        aside.add_rows("journal_order", bad)
    known_ids.update(await journal.client_order_ids_since(since))
    return max((f.ts for f in fills), default=None)


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
    stored = _decimal(await journal.get_counter(day, START_EQUITY), f"start equity of {day}")
    if stored is not None:
        start_equity = stored
    elif account is not None and days.day is None:
        start_equity = account.last_equity
    else:
        start_equity = portfolio.equity
    if stored is None:
        await journal.set_counter(day, START_EQUITY, str(start_equity))
    portfolio.start_day(day, start_equity)
    # Closed orders older than a few days (and their ids) stay in the journal, not in memory.
    engine.execution.prune(now - timedelta(days=3))
    orders_today = sum(
        1
        for o in orders.created_since(now - timedelta(days=1))
        if trading_day(o.created_at) == day and o.strategy != "flatten"
    )
    days.start(day, orders_today)
    trades = await journal.get_counter(day, DAY_TRADES)
    if trades is not None and trades.isdigit():
        days.load_day_trades({day: int(trades)})
    elif trades is not None:
        log.error("start-up: day-trade count %r of %s cannot be read; not used", trades, day)
    if account is not None:
        days.broker_day_trades = account.daytrade_count


async def loss_halt_day(journal: Journal, now: datetime) -> date | None:
    """Today, if the loss limit halted on it: it halts once per trading day, restarts
    included, so a trader who lifted today's loss-limit halt with an override is not halted
    again by the next tick."""
    today = trading_day(now)
    try:
        history = await journal.trading_state_history(limit=100)
    except UNREADABLE as exc:
        log.error("start-up: trading-state history cannot be read (%s); no loss-limit lock", exc)
        return None
    for record in history:
        if trading_day(record.ts) < today:
            break
        if record.cause == Cause.LOSS_LIMIT:
            return today
    return None


def _decimal(text: str | None, what: str) -> Decimal | None:
    """``text`` as a Decimal; None when absent or unreadable (logged: it is computed again)."""
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        log.error("start-up: %s %r cannot be read; computed again", what, text)
        return None
