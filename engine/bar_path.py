"""The bar path: market data -> mark -> strategy host -> risk gate -> order.

The feed hands bars and ticks over synchronously (``on_bar``/``on_tick``). When nothing is
waiting, a bar is handled right there: marked, fed to the strategy host, and an order the
host asks for goes through the risk gate and into the book at once; only its broker call
waits in a task of its own (the broker's answer never holds the next symbol up). That costs
the feed's call at most ``SLICE_S`` of bar handling per loop iteration; past it, and for
ticks, updates wait in a per-symbol queue (O(1)) for one dispatcher task, which takes each
symbol's pending data in turn in slices of ``SLICE_S`` and lets the loop run between slices,
so a minute that wakes 500 symbols at once never keeps a command, a heartbeat or a fill
waiting for long. Decisions come before broker calls: the orders a burst asks for pass the
gate as their bars are handled (tens of µs each), and their broker calls start together
once the burst is decided, or once the oldest has waited ``MAX_SEND_DELAY_S``. A broker
call costs the loop far more than a decision (the simulator's venue works on this loop,
~0.3 ms an order), so starting them between slices made every later bar of the minute
wait for all of them. Once everything pending has been handled (every symbol of the minute
marked) the equity snapshot is taken and the loss limit checked: once per batch, not once
per symbol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from engine.clock import Clock, TradingDays
from engine.domain import Bar, Fill, OrderRequest, Tick, TradingState
from engine.events import Severity
from engine.execution import ExecutionManager, SubmitResult
from engine.feed.base import MarketDataFeed, PriceListener
from engine.health import LatencyStats
from engine.order_book import OrderBook
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.risk import TradingStateController
from engine.store.journal import Journal
from engine.store.records import EquitySnapshot
from engine.strategy.host import OrderIntent, StrategyHost
from engine.workers import MarketDataQueue, Update

log = logging.getLogger(__name__)

BAR_LENGTH = timedelta(minutes=1)
SLICE_S = 0.002
"""Longest stretch of bar handling before the dispatcher lets other tasks run."""
MAX_SEND_DELAY_S = 0.01
"""Longest an order past the gate waits for the rest of its burst to be decided before its
broker call starts anyway."""

BrokerCall = Callable[[Coroutine[Any, Any, SubmitResult]], Awaitable[SubmitResult | None]]
Report = Callable[[str, str, Severity], None]


class Busy(Protocol):
    """What the engine counts as work in flight (replay pacing and a graceful stop wait
    for it): ``engine.loops.Activity`` fits."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


class BarPath:
    def __init__(
        self,
        *,
        host: StrategyHost,
        portfolio: Portfolio,
        orders: OrderBook,
        execution: ExecutionManager,
        state: TradingStateController,
        clock: Clock,
        journal: Journal,
        snapshot_every: timedelta,
        activity: Busy,
        call_broker: BrokerCall,
        flattening: Callable[[], bool],
        check_loss_limit: Callable[[], None],
        roll_day: Callable[[], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        report: Report,
        sinks: Sequence[PriceListener] = (),
    ) -> None:
        self.host = host
        self.queue = MarketDataQueue()
        self.signals = 0
        """Orders the strategies asked for and the path sent to the risk gate."""
        self.order_latency = LatencyStats()
        """Bar handed over by the feed -> its order on its way to the risk gate and broker."""
        self.signal_latency = LatencyStats()
        """Bar handed over by the feed -> order acknowledged by the broker."""
        self.stopped = False
        self._receiving = False
        """More parts of this timestamp's bars are coming (``receiving``)."""
        self._portfolio = portfolio
        self._orders = orders
        self._execution = execution
        self._state = state
        self._clock = clock
        self._journal = journal
        self._snapshot_every = snapshot_every
        self._activity = activity
        self._call_broker = call_broker
        self._flattening = flattening
        self._check_loss_limit = check_loss_limit
        self._roll_day = roll_day
        self._spawn = spawn
        self._report = report
        self._sinks = list(sinks)
        self._owned = frozenset(host.symbols)
        self._bar_seen: dict[str, float] = {}
        self._submitting: set[str] = set()
        self._draining = False
        self._last_snapshot: datetime | None = None
        self._days = TradingDays()
        self._day_ends: datetime | None = None
        """When the trading day the dispatcher last opened ends: until then a bar may be
        handled as it arrives (the first bar of a day waits for the day to be opened)."""
        self._inline_s = 0.0
        self._inline_batch = False
        self._sends: list[tuple[Order, OrderRequest, float | None]] = []
        """Orders past the gate whose broker call starts once the burst is decided."""
        self._sends_since = 0.0
        """When the oldest of ``_sends`` passed the gate (``loop.time()``)."""
        host.on_pause = self._paused

    # ---- the feed's side: synchronous, O(1) ------------------------------------------

    def on_bar(self, bar: Bar) -> None:
        for sink in self._sinks:
            sink.on_bar(bar)
        if bar.symbol in self._owned:
            self._bar_seen[bar.symbol] = self._clock.monotonic()
            if not self._handle_now(bar):
                self.queue.push_bar(bar)

    def on_tick(self, tick: Tick) -> None:
        for sink in self._sinks:
            sink.on_tick(tick)
        if tick.symbol in self._owned:
            self.queue.push_tick(tick)

    @property
    def idle(self) -> bool:
        """Nothing waiting, nothing being handled, no order of ours on its way."""
        return not (self.queue.pending or self._draining or self._submitting)

    # ---- warm-up and strategies ------------------------------------------------------

    async def warm_up(self, feed: MarketDataFeed, symbols: Sequence[str] | None = None) -> None:
        """Give each strategy exactly the history it asked for, and mark each symbol at its
        last close."""
        for symbol, bars in (await self._history(feed, symbols or self.host.symbols)).items():
            self.host.warm_up(symbol, bars, self._portfolio.qty(symbol))
            if bars:
                self._portfolio.mark(symbol, bars[-1].close)

    async def resume_strategies(self, feed: MarketDataFeed) -> list[str]:
        """Restart every paused strategy on fresh instances and fresh history."""
        resumed = []
        for name in list(self.host.paused):
            symbols = self.host.specs[name].symbols
            history = await self._history(feed, symbols)
            positions = {s: self._portfolio.qty(s) for s in symbols}
            if self.host.resume(name, history, positions):
                resumed.append(name)
        return resumed

    def on_fill(self, fill: Fill) -> None:
        """Tell the strategy that placed the order about its fill, as the fill path applies
        it (``FillPath.on_applied``); a strategy's error pauses that strategy only."""
        order = self._orders.get(fill.client_order_id)
        if order is not None and order.strategy:
            self.host.on_fill(fill, order.strategy)

    async def _history(self, feed: MarketDataFeed, symbols: Sequence[str]) -> dict[str, list[Bar]]:
        now = self._clock.now()
        found: dict[str, list[Bar]] = {}
        for symbol in symbols:
            wanted = self.host.warmup_bars(symbol)
            try:
                found[symbol] = await feed.history(symbol, now, wanted) if wanted else []
            except Exception as exc:
                log.warning("no warm-up history for %s: %s", symbol, exc)
                found[symbol] = []
        return found

    def _paused(self, name: str, reason: str) -> None:
        message = (
            f"strategy {name} paused after an error ({reason}); its symbols get no new "
            "orders, the other strategies keep trading. !resume (or a restart) starts it again."
        )
        self._report("strategy", message, Severity.CRITICAL)

    # ---- a bar handled as it arrives ---------------------------------------------------

    def _handle_now(self, bar: Bar) -> bool:
        """Handle a bar inside the feed's own call when that changes nothing but the wait:
        its symbol has nothing queued (its bars stay in order) and no open order (a fill the
        broker produced for it may still be on its way to the fill path, which the queued
        path lets land first, as before), the trading day is the one the dispatcher last
        opened, and the bar path has spent less than ``SLICE_S`` in this loop iteration
        (wall time, as the loop's lag is: ``perf_counter`` costs a tenth of a thread-CPU
        clock read, which is a system call here, twice per bar). Its order then passes the
        gate microseconds after the bar arrived instead of after the rest of the feed's
        burst. Otherwise the bar waits for the dispatcher, which yields
        between slices. False: queue it."""
        symbol = bar.symbol
        if (
            self._inline_s >= SLICE_S
            or self.queue.waiting(symbol)
            or symbol in self._submitting
            or self._orders.has_open(symbol)
            or self._day_ends is None
            or self._clock.now() >= self._day_ends
        ):
            return False
        started = time.perf_counter()
        if not self._inline_batch:
            self._inline_batch = True
            asyncio.get_running_loop().call_soon(self._after_inline)
        self.queue.updates += 1
        try:
            self._portfolio.mark(symbol, bar.close)  # (``_mark`` with no tick)
            # (no order open or on its way: checked above)
            may_trade = not self._stopped_now()
            intent = self.host.on_bar(bar, self._portfolio.qty(symbol), may_trade=may_trade)
            if intent is not None:
                self._submit(intent)
        except Exception as exc:
            log.exception("bar path failed on %s", symbol)
            self._report("strategy", f"{symbol}: {exc}", Severity.WARNING)
        finally:
            self._inline_s += time.perf_counter() - started
        return True

    def _after_inline(self) -> None:
        """Once per loop iteration that handled bars as they came: what the dispatcher does
        after a batch."""
        self._inline_batch = False
        self._inline_s = 0.0
        if not (self._draining or self.queue.pending):
            # Otherwise the dispatcher, woken for what is queued, runs first and sends these
            # with its own once the burst is decided: its bars reach the gate before those
            # broker calls take the loop.
            self._start_sends()
            self.maybe_snapshot()
            self._check_loss_limit()

    def receiving(self, more: bool) -> None:
        """The feed hands one timestamp's bars over in parts (``MarketDataSink.receiving``).
        Until the last is in, its orders pass the gate as their bars come but their broker
        calls wait, and no equity snapshot is taken: the minute is decided, sent and
        snapshotted as when it came in one call."""
        self._receiving = more
        if not more and not self._inline_batch:  # what ends a batch, once the minute is in
            self._inline_batch = True
            asyncio.get_running_loop().call_soon(self._after_inline)

    def _start_sends(self) -> None:
        """Start the broker call of every order that passed the gate, each in its task."""
        if self._receiving:
            return  # the rest of the minute is still coming: ``receiving(False)`` sends them
        sends, self._sends = self._sends, []
        for order, request, seen in sends:
            self._spawn(self._send(order, request, seen))

    # ---- the dispatcher --------------------------------------------------------------

    def day_opened(self) -> None:
        """Start-up has opened the trading day: its first bars need not wait for the
        dispatcher. Called before the feed starts (its first minute may come before this
        path's task has run at all, and would all wait for it)."""
        self._day_ends = self._opened_day_ends()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.queue.wait()
            self._activity.begin()
            self._draining = True
            try:
                await self._roll_day()
                self._day_ends = self._opened_day_ends()
                slice_end = loop.time() + SLICE_S
                any_sent = False
                while (update := self.queue.pop()) is not None:
                    try:
                        sent = self._handle(update)
                    except Exception as exc:
                        log.exception("bar path failed on %s", update.symbol)
                        self._report("strategy", f"{update.symbol}: {exc}", Severity.WARNING)
                        sent = False
                    if loop.time() >= slice_end:
                        if self._sends and loop.time() - self._sends_since >= MAX_SEND_DELAY_S:
                            self._start_sends()  # a long burst: they run now
                        await asyncio.sleep(0)
                        slice_end = loop.time() + SLICE_S
                    any_sent = any_sent or sent
                self._draining = False
                self._start_sends()
                if not any_sent:
                    # With orders sent, their fills are still on the way: the replay's settle
                    # (or the next batch, or the periodic beat) takes the snapshot instead.
                    self.maybe_snapshot()
                self._check_loss_limit()
            finally:
                self._draining = False
                self._start_sends()
                self._activity.end()

    def _opened_day_ends(self) -> datetime:
        """When the trading day just opened ends (the next midnight in New York)."""
        self._days.of(self._clock.now())
        return self._days.ends_at

    def _handle(self, update: Update) -> bool:
        symbol = update.symbol
        bars = update.bars
        self._mark(symbol, bars[-1] if bars else None, update.tick)
        if not bars:
            return False
        position = self._portfolio.qty(symbol)
        may_trade = self._may_trade(symbol)
        last = len(bars) - 1
        sent = False
        for i, bar in enumerate(bars):
            # Every bar updates the strategy; only the newest may trade (older ones are stale).
            intent = self.host.on_bar(bar, position, may_trade=may_trade and i == last)
            if intent is not None:
                self._submit(intent)
                sent = True
        return sent

    def _may_trade(self, symbol: str) -> bool:
        return not (
            symbol in self._submitting or self._orders.has_open(symbol) or self._stopped_now()
        )

    def _stopped_now(self) -> bool:
        return self.stopped or self._state.state is TradingState.HALTED or self._flattening()

    def _mark(self, symbol: str, bar: Bar | None, tick: Tick | None) -> None:
        """Mark to the newer of the bar's close (as of the bar's end) and the last trade."""
        if bar is not None and (tick is None or bar.ts + BAR_LENGTH > tick.ts):
            self._portfolio.mark(symbol, bar.close)
        elif tick is not None:
            self._portfolio.mark(symbol, tick.price)

    def _submit(self, intent: OrderIntent) -> None:
        """The order goes through the risk gate and into the book (and the journal's
        write-behind buffer) now; its broker call starts in a task of its own at the end of
        the slice (the dispatcher's, or the feed's call that handled the bar)."""
        self.signals += 1
        seen = self._bar_seen.get(intent.symbol)
        if seen is not None:
            self.order_latency.add(self._clock.monotonic() - seen)
        request = intent.request()
        try:
            started = self._execution.begin(request)
        except Exception as exc:
            log.exception("order for %s failed", intent.symbol)
            self._report("orders", f"{intent.symbol}: order not sent: {exc}", Severity.WARNING)
            return
        if isinstance(started, SubmitResult):
            return  # refused by the gate (the refusal is published)
        self._submitting.add(intent.symbol)
        self._activity.begin()
        if not self._sends:
            self._sends_since = time.monotonic()  # the loop's clock
        self._sends.append((started, request, seen))

    async def _send(self, order: Order, request: OrderRequest, seen: float | None) -> None:
        try:
            result = await self._call_broker(self._execution.send(order, request))
            if result is not None and result.rejected is None and seen is not None:
                self.signal_latency.add(self._clock.monotonic() - seen)
        except Exception as exc:
            log.exception("order for %s failed", request.symbol)
            self._report("orders", f"{request.symbol}: order not sent: {exc}", Severity.WARNING)
        finally:
            self._submitting.discard(request.symbol)
            self._activity.end()

    # ---- equity snapshots ------------------------------------------------------------

    def maybe_snapshot(self) -> None:
        """Snapshot equity if the interval has passed, but only while ``idle``: a minute's
        snapshot is taken once every symbol of that minute has been marked and the orders
        it caused have been answered. Called after each batch, by the periodic beat, and by
        the replay's settle once the fills are in too."""
        if self._receiving or not self.idle:
            return
        now = self._clock.now()
        if self._last_snapshot is not None and now - self._last_snapshot < self._snapshot_every:
            return
        self._last_snapshot = now
        p = self._portfolio
        self._journal.save_equity_snapshot(
            EquitySnapshot(
                ts=now,
                equity=p.equity,
                cash=p.cash,
                day_pnl=p.day_pnl,
                gross_exposure=p.gross_exposure,
                net_exposure=p.net_exposure,
            )
        )
