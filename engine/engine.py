"""The trading engine: one asyncio process that turns market data into orders, safely.

It knows nothing of Discord. Start-up: restore from the journal, reconcile with the broker
(broker is truth), restore the trading state, warm the strategy up, then trade. Stop: tasks
cancelled, broker closed, journal flushed and closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from config.settings import EngineSettings, RiskSettings, StorageSettings
from engine.broker.outage import OutageMonitor
from engine.broker.port import Broker, StreamGap
from engine.bus import EventBus
from engine.clock import Clock, trading_day
from engine.daily import DayTracker
from engine.domain import ZERO, Account, Bar, OrderRequest, Tick, TradingState
from engine.errors import BrokerError
from engine.events import EngineError, Event, Notice, Severity, event_payload
from engine.execution import ExecutionManager
from engine.feed.base import MarketDataFeed, PriceListener
from engine.flatten import Flattener, FlattenReport, ProgressCallback
from engine.health import HEALTH_FILE, BrokerHealth, LatencyStats, write_health_file
from engine.market_hours import MarketHours
from engine.order_book import OrderBook
from engine.orders import make_client_order_id
from engine.portfolio import Portfolio
from engine.reconcile import Reconciler, ReconcileResult
from engine.risk import (
    Cause,
    RiskGate,
    StateRecord,
    TradingStateController,
    loss_limit_breached,
)
from engine.store.journal import Journal
from engine.store.records import EquitySnapshot
from engine.strategy.base import Strategy, rows_to_frame
from engine.workers import SymbolBuffer

log = logging.getLogger(__name__)
T = TypeVar("T")

BAR_LENGTH = timedelta(minutes=1)
START_EQUITY = "start_equity"
DAY_TRADES = "day_trades"
CLEAN_SHUTDOWN = "clean_shutdown"


@dataclasses.dataclass(frozen=True, slots=True)
class HaltResult:
    record: StateRecord
    cancelled_orders: int
    flatten: FlattenReport | None


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
        # A broker that measures itself (Alpaca: every call, retries and probes included)
        # is the one source of truth; call_broker then only reports errors.
        own_health = getattr(broker, "health", None)
        self._broker_measures = isinstance(own_health, BrokerHealth)
        self.broker_health = own_health if isinstance(own_health, BrokerHealth) else BrokerHealth()
        self.outage: OutageMonitor | None = None
        if outage_halt_s is not None:
            self.outage = OutageMonitor(
                self.broker_health,
                clock,
                halt_after_s=outage_halt_s,
                halt=self._outage_halt,
                probe=broker.get_clock,
            )
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

        # Created in start(): they need what the journal and broker say.
        self._state: TradingStateController | None = None
        self._execution: ExecutionManager | None = None
        self._flattener: Flattener | None = None

        self._bar_seen: dict[str, float] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._last_snapshot: datetime | None = None
        self._loss_halt_day: date | None = None
        self._last_fill_ts: datetime | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = False
        self._unsubscribe = bus.subscribe(Event, self._journal_event)

    # ---- parts built at start ----------------------------------------------------------

    @property
    def state(self) -> TradingStateController:
        if self._state is None:
            raise RuntimeError("engine not started")
        return self._state

    @property
    def execution(self) -> ExecutionManager:
        if self._execution is None:
            raise RuntimeError("engine not started")
        return self._execution

    @property
    def flattener(self) -> Flattener:
        if self._flattener is None:
            raise RuntimeError("engine not started")
        return self._flattener

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.started_mono = self.clock.monotonic()
        clean = await self.journal.get_meta(CLEAN_SHUTDOWN)
        self.clean_last_shutdown = None if clean is None else clean == "true"
        await self.journal.set_meta(CLEAN_SHUTDOWN, "false")

        last = await self.journal.last_trading_state()
        initial = (
            StateRecord(last.state, last.actor, last.reason, last.cause, last.ts)
            if last is not None
            else None
        )
        self._state = TradingStateController(self.bus, self.clock, self.journal, initial)
        self._execution = ExecutionManager(
            broker=self.broker,
            journal=self.journal,
            bus=self.bus,
            clock=self.clock,
            portfolio=self.portfolio,
            orders=self.orders,
            state=self._state,
            gate=self.gate,
            days=self.days,
            market_open=self.market.is_open,
            buying_power=self._buying_power,
        )
        self._flattener = Flattener(
            broker=self.broker,
            execution=self._execution,
            portfolio=self.portfolio,
            state=self._state,
            market=self.market,
            clock=self.clock,
            deadline_s=self.settings.flatten_deadline_s,
        )

        await self.broker.connect()
        await self.market.refresh()
        await self._restore_from_journal()
        since = await self._recovery_start()
        self.last_reconcile = await Reconciler(
            broker=self.broker,
            execution=self._execution,
            portfolio=self.portfolio,
            orders=self.orders,
            bus=self.bus,
            clock=self.clock,
        ).run(since, at_startup=True)
        self.account = self.last_reconcile.account
        await self._start_day(trading_day(self.clock.now()))
        await self._restore_loss_halt_day()
        await self._warm_up()

        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._consume_trade_updates(), name="trade-updates"),
            loop.create_task(self._run_feed(), name="feed"),
            loop.create_task(self._measure_loop_lag(), name="loop-lag"),
            loop.create_task(self._periodic(), name="periodic"),
            loop.create_task(self._write_liveness(), name="liveness"),
        ]
        self._tasks += [
            loop.create_task(self._worker(buf), name=f"worker-{buf.symbol}")
            for buf in self.buffers.values()
        ]
        if self.outage is not None:
            self._tasks.append(loop.create_task(self.outage.run(), name="outage-watchdog"))
        self.ready.set()
        log.info("engine ready: %s, %s", self.state.state.value, self.last_reconcile.summary())

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
            await asyncio.wait_for(self._idle.wait(), self.settings.shutdown_grace_s)
        except TimeoutError:
            log.warning("stopping with broker calls still in flight")
        if self.settings.flatten_on_shutdown and self._flattener is not None:
            try:
                report = await self._flattener.flatten("shutdown")
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
                await self.journal.set_meta(CLEAN_SHUTDOWN, "true")
        finally:
            self._unsubscribe()
            await self.journal.close()
        log.info("engine stopped")

    async def _restore_from_journal(self) -> None:
        """Rebuild the book from our own journal (positions, orders, ids already used)."""
        fills = await self.journal.load_fills()
        for fill in fills:
            self.portfolio.apply_fill(fill)
        self._last_fill_ts = fills[-1].ts if fills else None
        since = self.clock.now() - timedelta(days=5)
        self.orders.add_all(await self.journal.load_orders(since=since))
        self.orders.add_all(await self.journal.load_orders(open_only=True))
        known = await self.journal.client_order_ids_since(since)
        self.execution.known_ids.update(known)
        for fill in fills:
            self.execution.known_ids.add(fill.client_order_id)

    async def _recovery_start(self) -> datetime:
        """Ask the broker for executions from the last one we know (or the day's start)."""
        now = self.clock.now()
        session = self.market.session(trading_day(now))
        start = session.open - timedelta(hours=6) if session else now - timedelta(days=1)
        if self._last_fill_ts is not None:
            start = min(start, self._last_fill_ts - timedelta(minutes=1))
        open_created = [o.created_at for o in self.orders.open_orders()]
        return min([start, *open_created])

    async def _start_day(self, day: Any) -> None:
        stored = await self.journal.get_counter(day, START_EQUITY)
        if stored is not None:
            start_equity = Decimal(stored)
        elif self.account is not None and self.days.day is None:
            start_equity = self.account.last_equity
        else:
            start_equity = self.portfolio.equity
        if stored is None:
            await self.journal.set_counter(day, START_EQUITY, str(start_equity))
        self.portfolio.start_day(day, start_equity)
        # Closed orders older than a few days stay in the journal, not in memory.
        self.orders.prune(self.clock.now() - timedelta(days=3))
        orders_today = sum(
            1
            for o in self.orders.created_since(self.clock.now() - timedelta(days=1))
            if trading_day(o.created_at) == day and o.strategy != "flatten"
        )
        self.days.start(day, orders_today)
        trades = await self.journal.get_counter(day, DAY_TRADES)
        if trades is not None:
            self.days.load_day_trades({day: int(trades)})
        if self.account is not None:
            self.days.broker_day_trades = self.account.daytrade_count

    async def _restore_loss_halt_day(self) -> None:
        """The loss limit halts once per trading day, restarts included: a trader who lifted
        today's loss-limit halt with an override is not halted again by the next tick."""
        today = trading_day(self.clock.now())
        for record in await self.journal.trading_state_history(limit=100):
            if trading_day(record.ts) < today:
                break
            if record.cause == Cause.LOSS_LIMIT:
                self._loss_halt_day = today
                break

    async def _warm_up(self) -> None:
        now = self.clock.now()
        for symbol, buf in self.buffers.items():
            try:
                bars = await self.feed.history(symbol, now, self.settings.history_bars)
            except Exception as exc:
                log.warning("no warm-up history for %s: %s", symbol, exc)
                continue
            buf.seed(bars)
            if bars:
                self.portfolio.mark(symbol, bars[-1].close)

    # ---- market data -------------------------------------------------------------------

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

    async def _run_feed(self) -> None:
        try:
            await self.feed.run(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("market data feed stopped")
            self._error("market_data", f"feed stopped: {exc}", Severity.CRITICAL)

    async def settle(self) -> None:
        """Replay pacing (see ``MarketDataSink.settle``): return once every worker and the
        trade-update consumer are idle and no update is waiting."""
        while True:
            # Let tasks woken by the last delivery start before judging whether all is quiet.
            for _ in range(3):
                await asyncio.sleep(0)
            if self._busy == 0 and not any(b.pending for b in self.buffers.values()):
                return
            await self._idle.wait()

    def _begin(self) -> None:
        self._busy += 1
        self._idle.clear()

    def _end(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def _worker(self, buf: SymbolBuffer) -> None:
        while True:
            update = await buf.next_update()
            self._begin()
            try:
                self._mark(buf.symbol, update.bar, update.tick)
                if update.bar is not None:
                    await self._roll_day_if_needed()
                    await self._evaluate(buf, update.bar)
                self._maybe_snapshot()
                if self.portfolio.qty(buf.symbol) != ZERO:
                    # Only a held symbol's price can move the day's P&L.
                    self._check_loss_limit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("worker %s failed on an update", buf.symbol)
                self._error("strategy", f"{buf.symbol}: {exc}")
            finally:
                self._end()

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

    # ---- broker side -------------------------------------------------------------------

    async def call_broker(self, call: Coroutine[Any, Any, T]) -> T | None:
        """Await a broker call, recording health; broker failures are reported, not raised."""
        started = self.clock.monotonic()
        try:
            result = await call
        except BrokerError as exc:
            if not self._broker_measures:
                self.broker_health.failure(self.clock.now(), self.clock.monotonic(), str(exc))
            self._error("broker", str(exc))
            return None
        if not self._broker_measures:
            self.broker_health.success(self.clock.now(), self.clock.monotonic() - started)
        return result

    async def _consume_trade_updates(self) -> None:
        async for item in self.broker.trade_updates():
            self._begin()
            try:
                if isinstance(item, StreamGap):
                    applied = await self.execution.recover(item.down_at - timedelta(minutes=1))
                    log.info("trade-update gap recovered: %d missed fills applied", applied)
                else:
                    await self.execution.on_trade_update(item)
            except asyncio.CancelledError:
                raise
            except BrokerError as exc:
                self._error("broker", f"recovery after a stream gap failed: {exc}")
            except Exception as exc:
                log.exception("trade update failed: %r", item)
                self._error("orders", f"trade update not applied: {exc}", Severity.CRITICAL)
            finally:
                self._end()
            self._check_loss_limit()

    def _buying_power(self) -> Decimal:
        return self.account.buying_power if self.account is not None else ZERO

    async def refresh_account(self) -> None:
        account = await self.call_broker(self.broker.get_account())
        if account is not None:
            self.account = account
            self.days.broker_day_trades = account.daytrade_count

    async def _periodic(self) -> None:
        interval = max(1.0, min(30.0, self.storage.equity_snapshot_seconds))
        while True:
            await asyncio.sleep(interval)
            self.beat()
            await self.refresh_account()
            await self.market.ensure_fresh()
            await self._roll_day_if_needed()
            self._maybe_snapshot()

    # ---- risk actions ------------------------------------------------------------------

    def _check_loss_limit(self) -> None:
        pnl = self.portfolio.day_pnl
        if self._loss_halt_day == self.days.day or not loss_limit_breached(pnl, self.risk_settings):
            return
        # Once per trading day: after a trader's override the gate still refuses new risk,
        # but the engine does not halt again on every tick.
        self._loss_halt_day = self.days.day
        limit = self.risk_settings.daily_loss_limit
        reason = f"daily loss limit hit: day P&L {pnl:,.2f} <= -{limit:,}"
        self.spawn(self._auto_halt(reason))

    async def _outage_halt(self, reason: str) -> None:
        """The outage watchdog's halt: keep positions (we cannot reach the broker to close
        them anyway), cancel what can be cancelled, tell the trader loudly."""
        self._error("broker", f"HALTING: {reason}", Severity.CRITICAL)
        if self.state.state is TradingState.HALTED:
            return
        await self.halt("broker-watchdog", reason, keep_positions=True, cause="broker_unreachable")

    async def _auto_halt(self, reason: str) -> None:
        await self.halt("risk", reason, cause="loss_limit")

    async def halt(
        self, actor: str, reason: str, *, keep_positions: bool = False, cause: str = "manual"
    ) -> HaltResult:
        """HALTED (persisted first), every open order cancelled, then flat unless asked not to."""
        record = await self.state.halt(actor, reason, cause=cause)
        cancelled = await self.call_broker(self.broker.cancel_all_orders()) or 0
        report = None
        if not keep_positions:
            report = await self.flattener.flatten(actor)
        return HaltResult(record, cancelled, report)

    async def flatten(self, actor: str, progress: ProgressCallback | None = None) -> FlattenReport:
        return await self.flattener.flatten(actor, progress)

    def beat(self) -> None:
        """The engine is alive: called by its own periodic task and by the heartbeat job."""
        self.last_heartbeat = self.clock.now()
        self.last_beat_mono = self.clock.monotonic()

    async def roll_day(self) -> None:
        """Open the current trading day if it is not open yet (market-open job; idempotent)."""
        await self._roll_day_if_needed()

    # ---- bookkeeping -------------------------------------------------------------------

    async def _roll_day_if_needed(self) -> None:
        day = trading_day(self.clock.now())
        if self.days.day != day:
            await self.market.ensure_fresh()
            await self._start_day(day)

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

    async def _write_liveness(self) -> None:
        """The container HEALTHCHECK reads this file; the engine writes it while its loop
        runs, so a wedged or dead engine goes stale."""
        path = self.storage.data_dir / HEALTH_FILE
        while True:
            payload = {
                "ts": datetime.now(UTC).isoformat(),
                "state": self.state.state.value,
                "market_time": self.clock.now().isoformat(),
            }
            try:
                await asyncio.to_thread(write_health_file, path, payload)
            except OSError as exc:
                log.warning("cannot write the liveness file %s: %s", path, exc)
            await asyncio.sleep(self.settings.health_interval_s)

    async def _measure_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.loop_lag_interval_s
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.add(max(0.0, loop.time() - before - interval))

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
