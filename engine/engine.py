"""The trading engine: one asyncio process that turns market data into orders, safely.

It knows nothing of Discord. Start-up (``engine.startup``): restore from the journal, reconcile
with the broker (broker is truth), restore the trading state, warm the strategy up, then trade.
Running: the bar/evaluate path below (one worker per symbol) beside the loops of
``engine.loops``. Control (``engine.control``): halt, flatten, reconcile. Stop: tasks
cancelled, broker closed, journal flushed and closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from config.settings import EngineSettings, RiskSettings, StorageSettings
from engine import loops, startup
from engine.broker.port import Broker
from engine.bus import EventBus
from engine.clock import Clock, trading_day
from engine.control import EngineControl, HaltResult
from engine.daily import DayTracker
from engine.domain import ZERO, Account, Bar, OrderRequest, Tick, TradingState
from engine.events import EngineError, Event, Notice, Severity, event_payload
from engine.execution import ExecutionManager
from engine.feed.base import MarketDataFeed, PriceListener
from engine.flatten import FlattenReport, ProgressCallback
from engine.health import HEALTH_FILE, LatencyStats
from engine.market_hours import MarketHours
from engine.order_book import OrderBook
from engine.orders import make_client_order_id
from engine.portfolio import Portfolio
from engine.reconcile import ReconcileResult
from engine.risk import RiskGate, TradingStateController
from engine.store.journal import Journal
from engine.store.records import EquitySnapshot
from engine.strategy.base import Strategy, rows_to_frame
from engine.watchdog import WatchdogLimits
from engine.workers import SymbolBuffer

log = logging.getLogger(__name__)

BAR_LENGTH = timedelta(minutes=1)


class TradingEngine:
    def __init__(
        self,
        *,
        mode: str,
        broker: Broker,
        feed: MarketDataFeed,
        strategy: Strategy,
        journal: Journal,
        bus: EventBus,
        clock: Clock,
        risk: RiskSettings,
        settings: EngineSettings,
        storage: StorageSettings,
        symbols: list[str],
        allowed_symbols: list[str],
        extra_sinks: list[PriceListener] | None = None,
        outage_halt_s: float | None = None,
        watchdog: WatchdogLimits | None = None,
    ) -> None:
        self.mode = mode
        self.broker = broker
        self.feed = feed
        self.strategy = strategy
        self.journal = journal
        self.bus = bus
        self.clock = clock
        self.risk_settings = risk
        self.settings = settings
        self.storage = storage
        self.symbols = symbols
        self._extra_sinks = extra_sinks or []

        self.portfolio = Portfolio()
        self.orders = OrderBook()
        self.market = MarketHours(broker, clock)
        self.days = DayTracker(self.market)
        self.gate = RiskGate(risk, allowed_symbols)
        self.buffers = {s: SymbolBuffer(s, settings.history_bars) for s in symbols}
        self.loop_lag = LatencyStats()
        self.signal_latency = LatencyStats()
        self.account: Account | None = None
        self.last_heartbeat: datetime | None = None
        self.last_beat_mono: float | None = None
        self.last_reconcile: ReconcileResult | None = None
        self.clean_last_shutdown: bool | None = None
        self.started_mono: float | None = None
        self.ready = asyncio.Event()
        self.signals = 0

        self._bar_seen: dict[str, float] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._last_snapshot: datetime | None = None
        self._activity = loops.Activity()
        self._stopped = False
        self._unsubscribe = bus.subscribe(Event, self._journal_event)

        # The state is ACTIVE until start() restores what the journal last acknowledged.
        self.state = TradingStateController(bus, clock, journal)
        self.execution = ExecutionManager(
            broker=broker,
            journal=journal,
            bus=bus,
            clock=clock,
            portfolio=self.portfolio,
            orders=self.orders,
            state=self.state,
            gate=self.gate,
            days=self.days,
            market_open=self.market.is_open,
            buying_power=self._buying_power,
        )
        self.control = EngineControl(
            state=self.state,
            broker=broker,
            execution=self.execution,
            bus=bus,
            portfolio=self.portfolio,
            orders=self.orders,
            market=self.market,
            days=self.days,
            clock=clock,
            risk=risk,
            flatten_deadline_s=settings.flatten_deadline_s,
            report=self._error,
            spawn=self.spawn,
            outage_halt_s=outage_halt_s,
            feed=feed.health,
            last_beat=lambda: self.last_beat_mono,
            watchdog=watchdog,
        )
        self.flattener = self.control.flattener
        self.broker_health = self.control.broker_health
        self.call_broker = self.control.call_broker

    # ---- lifecycle (the start-up restore steps are in engine.startup) -------------------

    async def start(self) -> None:
        self.started_mono = self.clock.monotonic()
        await startup.restore(self)
        self._start_loops()
        self.ready.set()
        log.info("engine ready: %s", self.state.state.value)

    def _start_loops(self) -> None:
        storage, settings, check = self.storage, self.settings, self.control.check_loss_limit
        beat_s = max(1.0, min(30.0, storage.equity_snapshot_seconds))
        running = {
            "trade-updates": loops.consume_trade_updates(
                self.broker, self.execution, self._activity, self._error, check
            ),
            "feed": loops.run_feed(self.feed, self, self._error),
            "loop-lag": loops.measure_loop_lag(settings.loop_lag_interval_s, self.loop_lag),
            "periodic": loops.every(beat_s, self._tick),
            "liveness": loops.write_liveness(
                storage.data_dir / HEALTH_FILE, settings.health_interval_s, self.state, self.clock
            ),
            **{f"worker-{buf.symbol}": self._worker(buf) for buf in self.buffers.values()},
            **self.control.guards(),
        }
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(coro, name=name) for name, coro in running.items()]

    async def stop(self) -> None:
        """Graceful stop: no new market data or signals, in-flight broker calls get
        ``ENGINE_SHUTDOWN_GRACE_S`` to finish, optionally flatten, then everything closes."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            if task.get_name() == "feed":
                task.cancel()
        try:
            await asyncio.wait_for(self._activity.wait_idle(), self.settings.shutdown_grace_s)
        except TimeoutError:
            log.warning("stopping with broker calls still in flight")
        if self.settings.flatten_on_shutdown:
            try:
                report = await self.flattener.flatten("shutdown")
                log.info("flatten on shutdown: flat=%s in %.1f s", report.flat, report.elapsed_s)
            except Exception:
                log.exception("flatten on shutdown failed")
        for task in [*self._tasks, *self._spawned]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._spawned, return_exceptions=True)
        try:
            await self.broker.close()
        except Exception:
            log.exception("closing the broker failed")
        try:
            if self.ready.is_set():
                # Only a stop after a completed start is clean: a start that failed half-way
                # must still look like a crash to the next boot report.
                await startup.mark_clean_stop(self.journal)
        finally:
            self._unsubscribe()
            await self.journal.close()
        log.info("engine stopped")

    # ---- the bar/evaluate path: market data -> mark -> strategy -> risk -> order ----------

    def on_bar(self, bar: Bar) -> None:
        for sink in self._extra_sinks:
            sink.on_bar(bar)
        buf = self.buffers.get(bar.symbol)
        if buf is not None:
            self._bar_seen[bar.symbol] = self.clock.monotonic()
            buf.push_bar(bar)

    def on_tick(self, tick: Tick) -> None:
        for sink in self._extra_sinks:
            sink.on_tick(tick)
        buf = self.buffers.get(tick.symbol)
        if buf is not None:
            buf.push_tick(tick)

    async def settle(self) -> None:
        """Replay pacing (see ``MarketDataSink.settle``): return once every worker and the
        trade-update consumer are idle and no update is waiting."""
        while True:
            # Let tasks woken by the last delivery start before judging whether all is quiet.
            for _ in range(3):
                await asyncio.sleep(0)
            if self._activity.busy == 0 and not any(b.pending for b in self.buffers.values()):
                return
            await self._activity.wait_idle()

    async def _worker(self, buf: SymbolBuffer) -> None:
        while True:
            update = await buf.next_update()
            self._activity.begin()
            try:
                self._mark(buf.symbol, update.bar, update.tick)
                if update.bar is not None:
                    await self._roll_day_if_needed()
                    await self._evaluate(buf, update.bar)
                self._maybe_snapshot()
                if self.portfolio.qty(buf.symbol) != ZERO:
                    # Only a held symbol's price can move the day's P&L.
                    self.control.check_loss_limit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("worker %s failed on an update", buf.symbol)
                self._error("strategy", f"{buf.symbol}: {exc}")
            finally:
                self._activity.end()

    def _mark(self, symbol: str, bar: Bar | None, tick: Tick | None) -> None:
        """Mark to the newer of the bar's close (as of the bar's end) and the last trade."""
        if bar is not None and (tick is None or bar.ts + BAR_LENGTH > tick.ts):
            self.portfolio.mark(symbol, bar.close)
        elif tick is not None:
            self.portfolio.mark(symbol, tick.price)

    async def _evaluate(self, buf: SymbolBuffer, bar: Bar) -> None:
        if self._stopped or self.state.state is TradingState.HALTED or self.flattener.running:
            return
        needed = self.strategy.warmup_bars + 1
        if len(buf.rows) < needed or self.orders.has_open(buf.symbol):
            return
        frame = rows_to_frame(buf.recent_rows(needed))
        signal = self.strategy.on_bar(buf.symbol, frame, self.portfolio.qty(buf.symbol))
        if signal is None:
            return
        self.signals += 1
        request = OrderRequest(
            client_order_id=make_client_order_id(signal.strategy, signal.symbol, signal.ts),
            symbol=signal.symbol,
            side=signal.side,
            qty=signal.qty,
            strategy=signal.strategy,
        )
        result = await self.call_broker(self.execution.submit(request))
        seen = self._bar_seen.get(buf.symbol)
        if result is not None and result.order is not None and seen is not None:
            self.signal_latency.add(self.clock.monotonic() - seen)

    def _maybe_snapshot(self) -> None:
        now = self.clock.now()
        interval = timedelta(seconds=self.storage.equity_snapshot_seconds)
        if self._last_snapshot is not None and now - self._last_snapshot < interval:
            return
        self._last_snapshot = now
        self.journal.save_equity_snapshot(
            EquitySnapshot(
                ts=now,
                equity=self.portfolio.equity,
                cash=self.portfolio.cash,
                day_pnl=self.portfolio.day_pnl,
                gross_exposure=self.portfolio.gross_exposure,
                net_exposure=self.portfolio.net_exposure,
            )
        )

    # ---- public control API (engine.control) ----------------------------------------------

    async def halt(
        self, actor: str, reason: str, *, keep_positions: bool = False, cause: str = "manual"
    ) -> HaltResult:
        """HALTED (persisted first), every open order cancelled, then flat unless asked not to."""
        return await self.control.halt(actor, reason, keep_positions=keep_positions, cause=cause)

    async def flatten(self, actor: str, progress: ProgressCallback | None = None) -> FlattenReport:
        return await self.control.flatten(actor, progress)

    async def reconcile(self, reason: str) -> ReconcileResult:
        """The one reconcile with the broker (the scheduled job, the broker back after an
        outage); drifts are corrected and published. See ``EngineControl.reconcile``."""
        result = await self.control.reconcile(reason)
        if not result.skipped:
            self.last_reconcile = result
        return result

    def beat(self) -> None:
        """The engine is alive: called by its own periodic task and by the heartbeat job."""
        self.last_heartbeat = self.clock.now()
        self.last_beat_mono = self.clock.monotonic()

    async def roll_day(self) -> None:
        """Open the current trading day if it is not open yet (market-open job; idempotent)."""
        await self._roll_day_if_needed()

    async def refresh_account(self) -> None:
        account = await self.call_broker(self.broker.get_account())
        if account is not None:
            self.account = account
            self.days.broker_day_trades = account.daytrade_count

    # ---- bookkeeping ---------------------------------------------------------------------

    async def _tick(self) -> None:
        self.beat()
        await self.refresh_account()
        await self.market.ensure_fresh()
        await self._roll_day_if_needed()
        self._maybe_snapshot()

    async def _roll_day_if_needed(self) -> None:
        day = trading_day(self.clock.now())
        if self.days.day != day:
            await self.market.ensure_fresh()
            await startup.open_day(self, day)

    def _buying_power(self) -> Decimal:
        return self.account.buying_power if self.account is not None else ZERO

    @property
    def dropped_updates(self) -> int:
        return sum(buf.dropped for buf in self.buffers.values())

    @property
    def uptime_s(self) -> float:
        return 0.0 if self.started_mono is None else self.clock.monotonic() - self.started_mono

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _error(self, component: str, message: str, severity: Severity = Severity.WARNING) -> None:
        self.bus.publish(
            EngineError(
                ts=self.clock.now(), component=component, message=message, severity=severity
            )
        )

    def _journal_event(self, event: Event) -> None:
        if isinstance(event, Notice) and event.kind == "heartbeat":
            return
        self.journal.append_event(type(event).__name__, event_payload(event), event.ts)
