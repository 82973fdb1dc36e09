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
from typing import Any

from config.settings import EngineSettings, RiskSettings, StorageSettings
from engine import loops, startup
from engine.bar_path import BarPath
from engine.broker.port import Broker
from engine.bus import EventBus
from engine.buying_power import BuyingPower
from engine.clock import Clock, trading_day
from engine.control import EngineControl, HaltResult
from engine.daily import DayTracker
from engine.domain import Account, Bar, Tick, TradingState
from engine.events import EngineError, Event, Notice, Severity, event_payload
from engine.execution import ExecutionManager
from engine.feed.base import MarketDataFeed, PriceListener
from engine.flatten import FlattenReport, ProgressCallback
from engine.health import HEALTH_FILE, LatencyStats
from engine.market_hours import MarketHours
from engine.order_book import OrderBook
from engine.portfolio import Portfolio
from engine.reconcile import ReconcileResult
from engine.risk import Cause, RiskGate, TradingStateController
from engine.store.journal import Journal
from engine.strategy.host import StrategyHost
from engine.watchdog import WatchdogLimits

log = logging.getLogger(__name__)

BAR_LENGTH = timedelta(minutes=1)
REPLAY_UNACKED_FILLS = 500
"""Fills a replay at full speed may run ahead of their journal commits (it waits above)."""


class TradingEngine:
    def __init__(
        self,
        *,
        mode: str,
        broker: Broker,
        feed: MarketDataFeed,
        strategies: StrategyHost,
        journal: Journal,
        bus: EventBus,
        clock: Clock,
        risk: RiskSettings,
        settings: EngineSettings,
        storage: StorageSettings,
        allowed_symbols: list[str],
        extra_sinks: list[PriceListener] | None = None,
        outage_halt_s: float | None = None,
        watchdog: WatchdogLimits | None = None,
    ) -> None:
        self.mode = mode
        self.broker = broker
        self.feed = feed
        self.strategies = strategies
        self.journal = journal
        self.bus = bus
        self.clock = clock
        self.risk_settings = risk
        self.settings = settings
        self.storage = storage
        self.symbols = list(strategies.symbols)

        self.portfolio = Portfolio()
        self.orders = OrderBook()
        self.market = MarketHours(broker, clock)
        self.days = DayTracker(self.market)
        self.gate = RiskGate(risk, allowed_symbols)
        self.loop_lag = LatencyStats()
        self.account: Account | None = None
        self.last_heartbeat: datetime | None = None
        self.last_beat_mono: float | None = None
        self.last_reconcile: ReconcileResult | None = None
        self.clean_last_shutdown: bool | None = None
        self.started_mono: float | None = None
        self.ready = asyncio.Event()

        self._tasks: list[asyncio.Task[Any]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._activity = loops.Activity()
        self._stopped = False
        self._unsubscribe = bus.subscribe(Event, self._journal_event)

        # The state is ACTIVE until start() restores what the journal last acknowledged.
        self.state = TradingStateController(bus, clock, journal)
        self.buying_power = BuyingPower(
            portfolio=self.portfolio,
            orders=self.orders,
            bus=bus,
            fetch=self._fetch_account,
            spawn=self.spawn,
            wanted=self._may_add_risk,
        )
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
            buying_power=self.buying_power.available,
        )
        self.control = EngineControl(
            state=self.state,
            broker=broker,
            execution=self.execution,
            journal=journal,
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
        if self.control.outage is not None:  # broker back after an outage: reconcile at once
            self.control.outage.on_recovered = self._broker_back
        self.bars = BarPath(
            host=strategies,
            portfolio=self.portfolio,
            orders=self.orders,
            execution=self.execution,
            state=self.state,
            clock=clock,
            journal=journal,
            snapshot_every=timedelta(seconds=storage.equity_snapshot_seconds),
            activity=self._activity,
            call_broker=self.call_broker,
            flattening=lambda: self.flattener.running,
            check_loss_limit=self.control.check_loss_limit,
            roll_day=self._roll_day_if_needed,
            spawn=self.spawn,
            report=self._error,
            sinks=extra_sinks or (),
        )
        self.execution.on_applied = self.bars.on_fill

    # ---- lifecycle (the start-up restore steps are in engine.startup) -------------------

    async def start(self) -> None:
        self.started_mono = self.clock.monotonic()
        await startup.restore(self)
        self.bars.day_opened()
        self._start_loops()
        self.spawn(self.control.finish_interrupted_flatten())
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
            "bars": self.bars.run(),
            **self.control.guards(),
        }
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(coro, name=name) for name, coro in running.items()]

    async def stop(self) -> None:
        """Graceful stop: no new market data or signals, in-flight broker calls get
        ``ENGINE_SHUTDOWN_GRACE_S`` to finish, optionally flatten, then everything closes."""
        if self._stopped:
            return
        self._stopped = self.bars.stopped = True
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
        await self.execution.close()
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
            self.buying_power.close()
            await self.journal.close()
        log.info("engine stopped")

    # ---- market data in: the bar path (engine.bar_path) --------------------------------

    def on_bar(self, bar: Bar) -> None:
        self.bars.on_bar(bar)

    def on_tick(self, tick: Tick) -> None:
        self.bars.on_tick(tick)

    def receiving(self, more: bool) -> None:
        self.bars.receiving(more)

    async def settle(self, *, journaled: bool = True) -> None:
        """Return once the bar path, the orders it sent and the trade-update consumer are
        idle and no update is waiting: every fill so far is in the book and its strategy has
        heard of it. With ``journaled`` (the default) also once every fill is on disk and
        acknowledged. Replay pacing (``MarketDataSink.settle``) passes ``journaled=False``
        between minutes, so the journal commits while the next minute is worked on, unless
        more than ``REPLAY_UNACKED_FILLS`` fills wait for it."""
        while True:
            # Let tasks woken by the last delivery start before judging whether all is quiet.
            for _ in range(3):
                await asyncio.sleep(0)
            if self._activity.busy == 0 and self.bars.idle:
                unacked = self.execution.unacknowledged
                if not unacked or (not journaled and unacked <= REPLAY_UNACKED_FILLS):
                    self.bars.maybe_snapshot()  # the minute's marks and fills are all in
                    return
                await self.execution.drain()  # fills journaled and acknowledged
            else:
                await self._activity.wait_idle()

    async def resume_strategies(self) -> list[str]:
        """Start every strategy paused after an error again (``!resume``); their names."""
        return await self.bars.resume_strategies(self.feed)

    @property
    def signals(self) -> int:
        return self.bars.signals

    @property
    def signal_latency(self) -> LatencyStats:
        return self.bars.signal_latency

    # ---- public control API (engine.control) ----------------------------------------------

    async def halt(
        self,
        actor: str,
        reason: str,
        *,
        keep_positions: bool = False,
        cause: Cause = Cause.MANUAL,
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

    async def _broker_back(self, reason: str) -> None:
        """The broker answers again after an outage: reconcile at once and say so, with the
        state the trader finds (an outage halt stays until a person resumes)."""
        result = await self.reconcile(reason)
        self.control.announce_broker_back(reason, result)

    def beat(self) -> None:
        """The engine is alive: called by its own periodic task and by the heartbeat job."""
        self.last_heartbeat = self.clock.now()
        self.last_beat_mono = self.clock.monotonic()

    async def roll_day(self) -> None:
        """Open the current trading day if it is not open yet (market-open job; idempotent)."""
        await self._roll_day_if_needed()

    async def refresh_account(self) -> None:
        """The broker's account now (buying power included: ``engine.buying_power``)."""
        await self.buying_power.refresh()

    def _may_add_risk(self) -> bool:
        """Only an ACTIVE engine that is not flattening can send an order the buying power
        limits (REDUCING only reduces, which the gate never prices against it)."""
        return self.state.state is TradingState.ACTIVE and not self.flattener.running

    async def _fetch_account(self) -> Account | None:
        account = await self.call_broker(self.broker.get_account())
        if account is not None:
            self.account = account
            self.days.broker_day_trades = account.daytrade_count
        return account

    # ---- bookkeeping ---------------------------------------------------------------------

    async def _tick(self) -> None:
        self.beat()
        await self.refresh_account()
        await self.market.ensure_fresh()
        await self._roll_day_if_needed()
        self.bars.maybe_snapshot()

    async def _roll_day_if_needed(self) -> None:
        day = trading_day(self.clock.now())
        if self.days.day != day:
            await self.market.ensure_fresh()
            await startup.open_day(self, day)

    @property
    def dropped_updates(self) -> int:
        return self.bars.queue.dropped

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
