"""The engine's control API and its guards: halt, flatten and reconcile (``TradingEngine``
exposes them as its public methods), the broker calls with their health, and the guards that
act on their own (daily loss limit, broker outage, the dead-man's switch for stale data, the
journal that cannot write: ``engine.storage_guard``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from config.settings import RiskSettings
from engine.broker.outage import OutageMonitor
from engine.broker.port import Broker
from engine.bus import EventBus
from engine.clock import NEW_YORK, Clock
from engine.daily import DayTracker
from engine.domain import TradingState, usd
from engine.errors import BrokerError
from engine.events import Notice, Severity
from engine.execution import ExecutionManager
from engine.feed.base import FeedHealth
from engine.flatten import Flattener, FlattenReport, ProgressCallback
from engine.health import BrokerHealth
from engine.loops import ErrorReporter
from engine.market_hours import MarketHours
from engine.order_book import OrderBook
from engine.portfolio import Portfolio
from engine.reconcile import Reconciler, ReconcileResult
from engine.risk import Cause, StateRecord, TradingStateController, loss_limit_breached
from engine.storage_guard import StorageGuard
from engine.store.journal import Journal
from engine.watchdog import Watchdog, WatchdogLimits

log = logging.getLogger(__name__)
T = TypeVar("T")

RECONCILE_LOOKBACK = timedelta(hours=1)
"""A reconcile asks for executions since the last successful one, and at least this far."""


@dataclasses.dataclass(frozen=True, slots=True)
class HaltResult:
    record: StateRecord
    cancelled_orders: int
    flatten: FlattenReport | None


_FLATTEN_RECOVERY = {"kind": "flatten-recovery", "title": "Interrupted flatten"}


class EngineControl:
    def __init__(
        self,
        *,
        state: TradingStateController,
        broker: Broker,
        execution: ExecutionManager,
        journal: Journal,
        bus: EventBus,
        portfolio: Portfolio,
        orders: OrderBook,
        market: MarketHours,
        days: DayTracker,
        clock: Clock,
        risk: RiskSettings,
        flatten_deadline_s: float,
        report: ErrorReporter,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        outage_halt_s: float | None,
        feed: FeedHealth,
        last_beat: Callable[[], float | None],
        watchdog: WatchdogLimits | None,
    ) -> None:
        self._state = state
        self._broker = broker
        self.flattener = Flattener(
            broker=broker,
            execution=execution,
            portfolio=portfolio,
            state=state,
            market=market,
            clock=clock,
            bus=bus,
            deadline_s=flatten_deadline_s,
            marks=journal,
        )
        self._reconciler = Reconciler(
            broker=broker,
            execution=execution,
            portfolio=portfolio,
            orders=orders,
            bus=bus,
            clock=clock,
        )
        self._bus = bus
        self._execution = execution
        self._portfolio = portfolio
        self._days = days
        self._clock = clock
        self._risk = risk
        self._report = report
        self._spawn = spawn
        self._reconciled_at: datetime | None = None
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
                halt=self.outage_halt,
                probe=broker.get_clock,
            )
        self.storage = StorageGuard(
            state=state, execution=execution, bus=bus, clock=clock, spawn=spawn
        )
        journal.on_writable_change = self.storage.on_writable_change
        self._watchdog_limits = watchdog
        self.watchdog: Watchdog | None = None
        if watchdog is not None:
            self.watchdog = Watchdog(
                state=state,
                bus=bus,
                clock=clock,
                feed=feed,
                market_open=market.is_open,
                last_beat=last_beat,
                stale_data_s=watchdog.stale_data_s,
                engine_stale_s=watchdog.engine_stale_s,
            )

    def guards(self) -> dict[str, Coroutine[Any, Any, None]]:
        """The guards' loops the engine runs beside its own, by task name."""
        guards: dict[str, Coroutine[Any, Any, None]] = {}
        if self.outage is not None:
            guards["outage-watchdog"] = self.outage.run()
        if self.watchdog is not None and self._watchdog_limits is not None:
            guards["dead-mans-switch"] = self.watchdog.run(self._watchdog_limits.check_interval_s)
        return guards

    async def call_broker(self, call: Coroutine[Any, Any, T]) -> T | None:
        """Await a broker call, recording health; broker failures are reported, not raised."""
        started = self._clock.monotonic()
        try:
            result = await call
        except BrokerError as exc:
            if not self._broker_measures:
                self.broker_health.failure(self._clock.now(), self._clock.monotonic(), str(exc))
            self._report("broker", str(exc), Severity.WARNING)
            return None
        if not self._broker_measures:
            self.broker_health.success(self._clock.now(), self._clock.monotonic() - started)
        return result

    # ---- the trader's controls -----------------------------------------------------------

    async def halt(
        self,
        actor: str,
        reason: str,
        *,
        keep_positions: bool = False,
        cause: Cause = Cause.MANUAL,
    ) -> HaltResult:
        """HALTED (persisted first), every open order cancelled, then flat unless asked not to."""
        record = await self._state.halt(actor, reason, cause=cause)
        cancelled = await self.call_broker(self._broker.cancel_all_orders()) or 0
        report = None
        if not keep_positions:
            report = await self.flattener.flatten(actor)
        return HaltResult(record, cancelled, report)

    async def flatten(self, actor: str, progress: ProgressCallback | None = None) -> FlattenReport:
        return await self.flattener.flatten(actor, progress)

    async def reconcile(
        self, reason: str, *, since: datetime | None = None, at_startup: bool = False
    ) -> ReconcileResult:
        """Bring positions, cash and open orders in line with the broker (see ``Reconciler``).

        Outside start-up it is skipped while a submit awaits the broker's answer or a
        flatten runs: an order the broker has and we do not know yet, or a close-all's fills
        arriving, would look like drift. Resting open orders (a limit waiting for its
        price) do not stop it: they are normal, and would keep a book from ever being
        reconciled; one that fills while the broker is read makes the ``Reconciler`` leave
        the comparison to the next run rather than count that fill twice."""
        now = self._clock.now()
        if not at_startup and (self.flattener.running or self._execution.in_flight):
            log.info("reconcile (%s) skipped: orders in flight", reason)
            return ReconcileResult(fills_recovered=0, skipped="orders in flight")
        if since is None:
            since = now - RECONCILE_LOOKBACK
            if self._reconciled_at is not None:
                since = min(since, self._reconciled_at - timedelta(minutes=1))
        result = await self._reconciler.run(since, at_startup=at_startup)
        self._reconciled_at = now
        log.info("reconcile (%s): %s", reason, result.summary())
        return result

    async def finish_interrupted_flatten(self) -> FlattenReport | None:
        """After a restart: finish a flatten a kill interrupted (close what is left, confirm
        flat with the broker), restore the state from before it unless a person changed it
        since, and say so in #system-alerts."""
        mark = await self.flattener.interrupted()
        if mark is None:
            return None
        when = mark.started_at.astimezone(NEW_YORK).strftime("%H:%M:%S")
        log.warning("a flatten by %s at %s was interrupted: finishing it", mark.actor, when)
        self._notify(
            Severity.WARNING,
            f"⚠️ The flatten asked by {mark.actor} at {when} ET was interrupted by a restart. "
            "Finishing it: closing what is left and confirming flat with the broker.",
            **_FLATTEN_RECOVERY,
        )
        report = await self.flattener.finish_interrupted(mark)
        record = self._state.record
        if report.flat:
            text = f"✅ Interrupted flatten finished: flat ({len(report.outcomes)} positions)."
        else:
            left = ", ".join(f"{o.symbol} {o.qty_left}" for o in report.leftovers) or "none"
            text = (
                f"⚠️ Interrupted flatten finished NOT flat: left {left}, "
                f"{report.open_orders_left} open orders."
            )
        if mark.replaced is not None and record.state is mark.replaced.state:
            text += f" Trading is {record.state.value} again, as before the flatten."
        else:
            text += f" Trading stays {record.state.value} (set by {record.actor})."
        self._notify(Severity.INFO if report.flat else Severity.WARNING, text, **_FLATTEN_RECOVERY)
        return report

    def announce_broker_back(self, reason: str, result: ReconcileResult) -> None:
        """#system-alerts hears that the broker is back, what the reconcile found and the
        state trading is left in."""
        state = self._state.record
        after = (
            f"Trading stays {state.state.value}, set by {state.actor}: !resume when ready."
            if state.state is not TradingState.ACTIVE
            else "Trading is ACTIVE."
        )
        self._notify(
            Severity.WARNING,
            f"📶 Broker reachable again: {reason}. Reconcile: {result.summary()}. {after}",
            kind="broker-back",
            title="Broker back",
        )

    def _notify(self, severity: Severity, text: str, *, kind: str, title: str) -> None:
        self._bus.publish(
            Notice(ts=self._clock.now(), kind=kind, title=title, text=text, severity=severity)
        )

    # ---- automatic halts -----------------------------------------------------------------

    def check_loss_limit(self) -> None:
        pnl = self._portfolio.day_pnl
        if pnl is None or not loss_limit_breached(pnl, self._risk):
            return
        # The state controller owns "halted by the loss limit today": after a trader's
        # override the gate still refuses new risk, but the engine does not halt again.
        if not self._state.claim_loss_halt():
            return
        limit = self._risk.daily_loss_limit
        reason = f"daily loss limit hit: day P&L {usd(pnl)} <= {usd(-limit)}"
        self._spawn(self.halt("risk", reason, cause=Cause.LOSS_LIMIT))

    async def outage_halt(self, reason: str) -> None:
        """The outage watchdog's halt: keep positions (we cannot reach the broker to close
        them anyway), cancel what can be cancelled, tell the trader loudly."""
        self._report("broker", f"HALTING: {reason}", Severity.CRITICAL)
        if self._state.state is TradingState.HALTED:
            return
        await self.halt(
            "broker-watchdog", reason, keep_positions=True, cause=Cause.BROKER_UNREACHABLE
        )
