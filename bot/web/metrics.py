"""``/metrics``: the engine in Prometheus text format, read at scrape time.

``EngineCollector`` reads the engine's own state and health objects when Prometheus scrapes
(nothing is sampled in between, nothing is audited), and counts order outcomes from the bus
since the process started. Names follow Prometheus conventions: a ``trader_`` prefix, base
units in the suffix (``_seconds``, ``_dollars``), ``_total`` on counters, labels with bounded
values only (never an order id or a free-text reason).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from bot.alerts import AlertRouter
from engine.app import EngineApp
from engine.broker.resilience import BreakerState, RequestBudget
from engine.domain import OrderStatus, TradingState
from engine.events import FillReceived, OrderUpdated, RiskRejected
from engine.feed.base import FeedHealth
from engine.health import LatencyStats

PREFIX = "trader_"
QUANTILES = (0.5, 0.9, 0.99)
_SUBMITTED_IDS_KEPT = 10_000

__all__ = ["CONTENT_TYPE_LATEST", "EngineCollector", "metrics_registry", "render"]


class _OrderCounts:
    """Order outcomes and fills seen on the bus since the process started."""

    def __init__(self) -> None:
        self.submitted = 0
        self.filled = 0
        self.cancelled = 0
        self.rejected: Counter[tuple[str, str]] = Counter()
        self.fills: Counter[str] = Counter()
        # An order can go back to submitted (a refused cancel): count each order once.
        self._submitted_ids: OrderedDict[str, None] = OrderedDict()

    def on_order(self, event: OrderUpdated) -> None:
        if event.status is OrderStatus.SUBMITTED:
            if event.client_order_id in self._submitted_ids:
                return
            self._submitted_ids[event.client_order_id] = None
            if len(self._submitted_ids) > _SUBMITTED_IDS_KEPT:
                self._submitted_ids.popitem(last=False)
            self.submitted += 1
        elif event.status is OrderStatus.FILLED:
            self.filled += 1
        elif event.status is OrderStatus.CANCELLED:
            self.cancelled += 1
        elif event.status is OrderStatus.REJECTED:
            # The broker's own words are free text: one bounded label value for them.
            self.rejected["broker", "broker_rejected"] += 1

    def on_risk_rejected(self, event: RiskRejected) -> None:
        self.rejected["risk", event.reason] += 1

    def on_fill(self, event: FillReceived) -> None:
        self.fills[event.fill.side.value] += 1


def _gauge(name: str, doc: str, value: float | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _labelled(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def _counter(name: str, doc: str, value: float | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _summary(name: str, doc: str, stats: LatencyStats) -> Metric:
    """A Prometheus summary over the stats' rolling window (quantiles) and whole life
    (count, sum)."""
    metric = Metric(PREFIX + name, doc, "summary")
    for q in QUANTILES:
        value = stats.percentile(q * 100)
        if value is not None:
            metric.add_sample(PREFIX + name, {"quantile": str(q)}, value)
    metric.add_sample(PREFIX + name + "_count", {}, float(stats.count))
    metric.add_sample(PREFIX + name + "_sum", {}, stats.total)
    return metric


class EngineCollector(Collector):
    def __init__(self, app: EngineApp, router: AlertRouter | None = None) -> None:
        self._app = app
        self._router = router
        self._counts = _OrderCounts()
        bus = app.bus
        self._unsubscribe: list[Callable[[], None]] = [
            bus.subscribe(OrderUpdated, self._counts.on_order),
            bus.subscribe(RiskRejected, self._counts.on_risk_rejected),
            bus.subscribe(FillReceived, self._counts.on_fill),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def collect(self) -> Iterable[Metric]:
        yield from self._trading()
        yield from self._book()
        yield from self._orders()
        yield from self._broker()
        yield from self._streams()
        yield from self._loop_and_alerts()

    # ---- trading state and money ----------------------------------------------------------

    def _trading(self) -> Iterator[Metric]:
        e = self._app.engine
        info = InfoMetricFamily(PREFIX.rstrip("_"), "What this process trades with")
        info.add_metric([], {"mode": e.mode, "broker": e.broker.name})
        yield info
        state = _labelled(
            "trading_state", "1 for the current trading state, 0 for the others", "state"
        )
        current = e.state.record.state
        for s in TradingState:
            state.add_metric([s.value], 1.0 if s is current else 0.0)
        yield state
        yield _gauge(
            "loss_limit_locked",
            "1 while the daily loss limit holds trading (resume needs the override)",
            float(e.state.loss_limit_locked),
        )
        yield _gauge(
            "market_open", "1 while the market is open", float(e.market.is_open(e.clock.now()))
        )
        yield _gauge("uptime_seconds", "Seconds since the engine started", e.uptime_s)
        if e.last_beat_mono is not None:
            yield _gauge(
                "heartbeat_age_seconds",
                "Seconds since the engine's last heartbeat",
                max(0.0, e.clock.monotonic() - e.last_beat_mono),
            )

    def _book(self) -> Iterator[Metric]:
        e = self._app.engine
        summary = e.portfolio.summary()
        yield _gauge("equity_dollars", "Account equity", float(summary.equity))
        yield _gauge("cash_dollars", "Cash", float(e.portfolio.cash))
        if summary.day_pnl is not None:
            yield _gauge(
                "day_pnl_dollars", "Profit and loss since the day's start", float(summary.day_pnl)
            )
        yield _gauge(
            "realized_pnl_dollars", "Realized P&L, gross of commissions", float(summary.realized)
        )
        yield _gauge(
            "unrealized_pnl_dollars", "Unrealized P&L of open positions", float(summary.unrealized)
        )
        yield _gauge(
            "gross_exposure_dollars",
            "Sum of absolute position values",
            float(summary.gross_exposure),
        )
        yield _gauge(
            "net_exposure_dollars", "Sum of signed position values", float(summary.net_exposure)
        )
        positions = e.portfolio.positions()
        yield _gauge("positions", "Open positions", float(len(positions)))
        qty = _labelled("position_shares", "Signed position size", "symbol")
        value = _labelled("position_market_value_dollars", "Signed position value", "symbol")
        for p in positions:
            qty.add_metric([p.symbol], float(p.qty))
            value.add_metric([p.symbol], float(p.market_value))
        yield qty
        yield value

    def _orders(self) -> Iterator[Metric]:
        e = self._app.engine
        c = self._counts
        yield _gauge(
            "open_orders",
            "Orders not yet filled, cancelled or rejected",
            float(len(e.orders.open_orders())),
        )
        yield _counter("orders_submitted", "Orders sent to the broker", c.submitted)
        yield _counter("orders_filled", "Orders filled completely", c.filled)
        yield _counter("orders_cancelled", "Orders cancelled", c.cancelled)
        rejected = CounterMetricFamily(
            PREFIX + "orders_rejected",
            "Orders refused, by who refused (risk gate or broker) and the risk gate's reason code",
            labels=["source", "reason"],
        )
        for (source, reason), count in sorted(c.rejected.items()):
            rejected.add_metric([source, reason], count)
        yield rejected
        fills = CounterMetricFamily(
            PREFIX + "fills", "Fills (executions) applied to the book", labels=["side"]
        )
        for side, count in sorted(c.fills.items()):
            fills.add_metric([side], count)
        yield fills
        yield _counter("signals", "Strategy signals the engine acted on", e.signals)

    # ---- broker ---------------------------------------------------------------------------

    def _broker(self) -> Iterator[Metric]:
        e = self._app.engine
        health = e.broker_health
        yield _gauge("broker_up", "1 while the last broker call succeeded", float(health.ok))
        yield _counter("broker_failures", "Broker calls that failed", health.failures)
        yield _gauge(
            "broker_consecutive_failures",
            "Broker failures in a row",
            float(health.consecutive_failures),
        )
        yield _summary(
            "broker_round_trip_seconds", "Broker call round-trip time", health.round_trips
        )
        broker = e.broker
        budget = getattr(broker, "budget", None)
        if isinstance(budget, RequestBudget):
            limit = self._app.settings.alpaca.max_requests_per_minute
            yield _gauge("broker_request_budget_limit", "Requests allowed per minute", float(limit))
            yield _gauge(
                "broker_request_budget_available",
                "Requests that could start now",
                float(budget.available),
            )
            yield _counter("broker_requests", "Requests started under the budget", budget.granted)
            yield _counter(
                "broker_request_budget_wait_seconds",
                "Time spent waiting for the budget",
                budget.waited_s,
            )
        breaker = getattr(broker, "breaker", None)
        state = getattr(breaker, "state", None)
        if isinstance(state, BreakerState):
            circuit = _labelled(
                "broker_circuit_state", "1 for the circuit breaker's current state", "state"
            )
            for s in BreakerState:
                circuit.add_metric([s.value], 1.0 if s is state else 0.0)
            yield circuit
        timeouts = getattr(broker, "timeouts", None)
        if isinstance(timeouts, int):
            yield _counter("broker_timeouts", "Broker calls that timed out", timeouts)

    def _streams(self) -> Iterator[Metric]:
        e = self._app.engine
        streams: list[tuple[str, FeedHealth]] = [("market_data", self._app.feed.health)]
        trade_health = getattr(getattr(e.broker, "stream", None), "health", None)
        if isinstance(trade_health, FeedHealth):
            streams.append(("trade_updates", trade_health))
        connected = _labelled("stream_connected", "1 while the stream is connected", "stream")
        reconnects = CounterMetricFamily(
            PREFIX + "stream_reconnects", "Stream reconnects", labels=["stream"]
        )
        messages = CounterMetricFamily(
            PREFIX + "stream_messages", "Messages received", labels=["stream"]
        )
        malformed = CounterMetricFamily(
            PREFIX + "stream_malformed_messages",
            "Messages that could not be read",
            labels=["stream"],
        )
        age = _labelled(
            "stream_last_message_age_seconds", "Seconds since the last message", "stream"
        )
        mono = e.clock.monotonic()
        for name, health in streams:
            connected.add_metric([name], float(health.connected))
            reconnects.add_metric([name], health.reconnects)
            messages.add_metric([name], health.messages)
            malformed.add_metric([name], health.malformed)
            if health.last_message_mono is not None:
                age.add_metric([name], max(0.0, mono - health.last_message_mono))
        yield from (connected, reconnects, messages, malformed, age)
        yield _counter(
            "dropped_updates",
            "Market updates replaced before a worker read them",
            e.dropped_updates,
        )

    # ---- event loop and alerts -----------------------------------------------------------

    def _loop_and_alerts(self) -> Iterator[Metric]:
        yield _summary(
            "event_loop_lag_seconds",
            "How late the event loop ran a timer (blocked loop)",
            self._app.engine.loop_lag,
        )
        router = self._router
        if router is None:
            return
        yield _gauge("alerts_queued", "Alerts waiting to be delivered", float(router.queued))
        yield _counter("alerts_sent", "Alerts delivered", router.stats.sent)
        yield _counter("alerts_failed", "Alerts given up on", router.stats.failed)
        dropped = CounterMetricFamily(
            PREFIX + "alerts_dropped",
            "Low-priority alerts dropped (queue full), by kind",
            labels=["kind"],
        )
        for kind, count in sorted(router.stats.dropped.items()):
            dropped.add_metric([kind], count)
        yield dropped


def metrics_registry(collector: EngineCollector) -> CollectorRegistry:
    """A registry of its own (not the process-wide default), with the engine and the
    process (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
