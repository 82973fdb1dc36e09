"""Hand-written parts for the engine core unit tests: a fault-injecting broker wrapper over the
real simulator, a scripted feed and strategy, and builders that wire real components (journal on
a temp file, sim exchange, bus, risk gate, trading state, portfolio) the way the engine does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from config.settings import EngineSettings, RiskSettings, StorageSettings
from engine.broker.port import BrokerOrder, CloseResult, StreamGap, TradeUpdate
from engine.broker.sim import SimBroker, to_broker_order, to_trade_update
from engine.bus import EventBus
from engine.calendar import MarketCalendar
from engine.clock import NEW_YORK, Clock, ReplayClock, SystemClock, trading_day
from engine.daily import DayTracker
from engine.domain import (
    ZERO,
    Account,
    Bar,
    Fill,
    MarketClock,
    OrderRequest,
    OrderStatus,
    Position,
    Side,
    TradingSession,
)
from engine.engine import TradingEngine
from engine.events import Event
from engine.execution import ExecutionManager
from engine.feed.base import FeedHealth, MarketDataSink
from engine.market_hours import MarketHours
from engine.order_book import OrderBook
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.risk import RiskGate, TradingStateController
from engine.sim.exchange import SimExchange
from engine.sim.models import CommissionModel, SlippageModel, TradeUpdateRecord
from engine.store.journal import Journal
from engine.strategy import Signal, Strategy, StrategyHost, StrategySpec
from engine.watchdog import WatchdogLimits

D = Decimal
DAY = date(2026, 3, 10)  # a Tuesday with a regular session
SYMBOLS = ("AAPL", "MSFT")
STARTING_CASH = D(100_000)


def ny(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    """An exchange-local wall time as aware UTC."""
    return datetime.combine(day, time(hour, minute), NEW_YORK).astimezone(UTC)


def make_exchange(
    clock: Clock, state_path: Path | None = None, *, max_fill: str = "0"
) -> SimExchange:
    """A simulator without slippage or commission, so every number is easy to compute by hand.
    ``max_fill`` > 0 splits orders into executions of at most that size, one per price."""
    return SimExchange(
        state_path,
        starting_cash=STARTING_CASH,
        slippage=SlippageModel(ZERO),
        commission=CommissionModel(per_share=ZERO, minimum=ZERO),
        max_fill_qty=D(max_fill),
        calendar=MarketCalendar(),
        clock=clock,
    )


def bar(symbol: str, ts: datetime, close: Decimal | int | str) -> Bar:
    price = D(close)
    return Bar(symbol, ts, price, price, price, price, D(100))


def request(
    cid: str, symbol: str = "AAPL", side: Side = Side.BUY, qty: Decimal | int | str = 10
) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol=symbol, side=side, qty=D(qty), strategy="t")


def broker_order(
    order: Order,
    status: OrderStatus,
    word: str,
    *,
    filled: Decimal = ZERO,
    avg: Decimal | None = None,
    broker_id: str = "",
) -> BrokerOrder:
    """A broker snapshot of one of our orders, as a trade update or a query would carry it."""
    return BrokerOrder(
        broker_order_id=broker_id or order.broker_order_id or f"b-{order.client_order_id}",
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        order_type=order.order_type,
        time_in_force=order.time_in_force,
        limit_price=order.limit_price,
        status=status,
        broker_status=word,
        filled_qty=filled,
        filled_avg_price=avg,
        submitted_at=order.created_at,
        updated_at=order.created_at,
    )


class FaultyBroker:
    """The ``Broker`` port over a real ``SimBroker``, with failures switched on by the test.

    Attributes set by tests: ``submit_error`` (raised instead of sending), ``submit_lost``
    (sent, then the answer is lost: raised after the exchange took the order),
    ``refuse_close`` (symbol -> message: close-all answers 403 for it and leaves it open),
    ``close_all_error``, ``account_error``, ``hide_fills`` (``get_fills_since`` answers nothing),
    ``close_all_gate`` (close-all waits until the event is set), ``submit_gate`` (a submit
    waits until the event is set), ``on_open_orders`` (called
    as the open orders are listed, to act out something happening meanwhile), ``fills_gate``
    (``get_fills_since`` waits until the event is set). Counted:
    ``fill_queries`` (the ``since`` of each ``get_fills_since``).
    """

    def __init__(self, sim: SimBroker) -> None:
        self.sim = sim
        self.name = sim.name
        self.submit_error: Exception | None = None
        self.submit_lost: Exception | None = None
        self.submit_gate: asyncio.Event | None = None
        self.refuse_close: dict[str, str] = {}
        self.close_all_error: Exception | None = None
        self.close_all_gate: asyncio.Event | None = None
        self.hide_fills = False
        self.account_error: Exception | None = None
        self.on_open_orders: Callable[[], None] | None = None
        self.submitted: list[OrderRequest] = []
        self.close_all_calls = 0
        self.position_checks = 0
        self.fill_queries: list[datetime] = []
        self.fills_gate: asyncio.Event | None = None

    @property
    def exchange(self) -> SimExchange:
        return self.sim.exchange

    async def connect(self) -> None:
        await self.sim.connect()

    async def close(self) -> None:
        await self.sim.close()

    async def submit_order(self, request: OrderRequest) -> BrokerOrder:
        self.submitted.append(request)
        if self.submit_gate is not None:
            await self.submit_gate.wait()  # the request is on the wire, the answer not back
        if self.submit_error is not None:
            raise self.submit_error
        record = await self.sim.submit_order(request)
        if self.submit_lost is not None:
            raise self.submit_lost
        return record

    async def cancel_all_orders(self) -> int:
        return await self.sim.cancel_all_orders()

    async def close_all_positions(self, cancel_orders: bool = True) -> list[CloseResult]:
        self.close_all_calls += 1
        if self.close_all_gate is not None:
            await self.close_all_gate.wait()
        if self.close_all_error is not None:
            raise self.close_all_error
        if not self.refuse_close:
            return await self.sim.close_all_positions(cancel_orders)
        if cancel_orders:
            await self.sim.cancel_all_orders()
        results = []
        for position in await self.sim.get_positions():
            message = self.refuse_close.get(position.symbol)
            if message is not None:
                results.append(CloseResult(position.symbol, False, 403, None, message))
            else:
                order = to_broker_order(self.exchange.close_position(position.symbol))
                results.append(CloseResult(position.symbol, True, 200, order))
        return results

    async def get_positions(self) -> list[Position]:
        self.position_checks += 1
        return await self.sim.get_positions()

    async def get_open_orders(self) -> list[BrokerOrder]:
        if self.on_open_orders is not None:
            self.on_open_orders()
        return await self.sim.get_open_orders()

    async def get_orders_since(self, since: datetime) -> list[BrokerOrder]:
        return await self.sim.get_orders_since(since)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return await self.sim.get_order_by_client_id(client_order_id)

    async def get_fills_since(self, since: datetime) -> list[Fill]:
        self.fill_queries.append(since)
        if self.fills_gate is not None:
            await self.fills_gate.wait()
        if self.hide_fills:
            return []
        return await self.sim.get_fills_since(since)

    async def get_account(self) -> Account:
        if self.account_error is not None:
            raise self.account_error
        return await self.sim.get_account()

    async def get_clock(self) -> MarketClock:
        return await self.sim.get_clock()

    async def get_calendar(self, start: date, end: date) -> list[TradingSession]:
        return await self.sim.get_calendar(start, end)

    def trade_updates(self) -> AsyncIterator[TradeUpdate | StreamGap]:
        return self.sim.trade_updates()


class ScriptedFeed:
    """A feed that serves fixed history and delivers nothing by itself: tests call
    ``engine.on_bar`` and ``engine.settle`` directly."""

    def __init__(self, history: dict[str, list[Bar]] | None = None) -> None:
        self.health = FeedHealth()
        self._history = history or {}

    async def run(self, sink: MarketDataSink) -> None:
        self.health.connected = True
        await asyncio.Event().wait()

    async def history(self, symbol: str, end: datetime, limit: int) -> list[Bar]:
        return [b for b in self._history.get(symbol, []) if b.ts < end][-limit:]

    def close(self) -> None:
        self.health.connected = False


class _ScriptParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Any


class _Scripted(Strategy[_ScriptParams]):
    name = "scripted"
    Params = _ScriptParams

    @property
    def warmup_bars(self) -> int:
        return int(self.params.script.warmup)

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        script: ScriptedStrategy = self.params.script
        script.calls.append(self.symbol)
        side = script.queued.pop(self.symbol, None)
        return None if side is None else Signal(side, "scripted", qty=script.qty)


class ScriptedStrategy:
    """A strategy whose signals a test queues per symbol (each used once, by the next bar
    of that symbol); records every bar it is shown. ``spec`` makes what the host runs."""

    name = _Scripted.name

    def __init__(self, warmup: int = 1, qty: Decimal = Decimal(10)) -> None:
        self.warmup = warmup
        self.qty = qty
        self.calls: list[str] = []
        self.queued: dict[str, Side] = {}

    def spec(self, symbols: tuple[str, ...]) -> StrategySpec:
        return StrategySpec(
            self.name, _Scripted, _ScriptParams(script=self), symbols, self.qty, False
        )


@dataclass
class ExecParts:
    """An ``ExecutionManager`` wired to real parts; trade updates wait in ``updates`` until
    ``pump()`` applies them (or a consumer task started by ``start_consumer`` does)."""

    clock: ReplayClock
    exchange: SimExchange
    broker: FaultyBroker
    journal: Journal
    bus: EventBus
    portfolio: Portfolio
    orders: OrderBook
    state: TradingStateController
    days: DayTracker
    market: MarketHours
    execution: ExecutionManager
    events: list[Event] = field(default_factory=list)
    updates: asyncio.Queue[TradeUpdate] = field(default_factory=asyncio.Queue)
    consumer: asyncio.Task[None] | None = None

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def pump(self) -> int:
        """Apply every queued trade update in order; returns how many."""
        count = 0
        while not self.updates.empty():
            await self.execution.on_trade_update(self.updates.get_nowait())
            count += 1
        await self.execution.drain()  # fills applied ahead of their commit acknowledged
        return count

    def lose_updates(self) -> int:
        """The stream missed everything queued so far."""
        count = 0
        while not self.updates.empty():
            self.updates.get_nowait()
            count += 1
        return count

    def start_consumer(self) -> None:
        async def consume() -> None:
            while True:
                update = await self.updates.get()
                await self.execution.on_trade_update(update)

        self.consumer = asyncio.get_running_loop().create_task(consume())

    def price(self, symbol: str, price: Decimal | int | str) -> None:
        """A trade print at the exchange and in our book."""
        self.exchange.on_price(symbol, D(price), self.clock.now())
        self.portfolio.mark(symbol, D(price))

    async def close(self) -> None:
        if self.consumer is not None:
            self.consumer.cancel()
            await asyncio.gather(self.consumer, return_exceptions=True)
        await self.execution.close()
        await self.journal.close()


async def build_execution(
    tmp_path: Path,
    *,
    start: datetime | None = None,
    risk: dict[str, Any] | None = None,
    max_fill: str = "0",
) -> ExecParts:
    clock = ReplayClock(start or ny(11))
    exchange = make_exchange(clock, max_fill=max_fill)
    broker = FaultyBroker(SimBroker(exchange))
    journal = await Journal.open(tmp_path / "journal.sqlite", SystemClock(), flush_interval=0.02)
    bus = EventBus()
    portfolio = Portfolio(cash=STARTING_CASH)
    orders = OrderBook()
    state = TradingStateController(bus, clock, journal)
    market = MarketHours(broker, clock)
    await market.refresh()
    days = DayTracker(market)
    days.start(trading_day(clock.now()))
    portfolio.start_day(trading_day(clock.now()), STARTING_CASH)
    gate = RiskGate(_risk_settings(risk), list(SYMBOLS))
    execution = ExecutionManager(
        broker=broker,
        journal=journal,
        bus=bus,
        clock=clock,
        portfolio=portfolio,
        orders=orders,
        state=state,
        gate=gate,
        days=days,
        market_open=market.is_open,
        buying_power=lambda: D(1_000_000),
    )
    parts = ExecParts(
        clock, exchange, broker, journal, bus, portfolio, orders, state, days, market, execution
    )
    bus.subscribe(Event, parts.events.append)

    def on_update(record: TradeUpdateRecord) -> None:
        parts.updates.put_nowait(to_trade_update(record))

    exchange.set_listener(on_update)
    return parts


def _risk_settings(overrides: dict[str, Any] | None) -> RiskSettings:
    return RiskSettings(**(overrides or {}))


@dataclass
class EngineParts:
    engine: TradingEngine
    clock: ReplayClock
    broker: FaultyBroker
    feed: ScriptedFeed
    strategy: ScriptedStrategy
    bus: EventBus
    journal: Journal
    events: list[Event] = field(default_factory=list)

    @property
    def exchange(self) -> SimExchange:
        return self.broker.exchange

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def deliver(
        self, symbol: str, minute_start: datetime, close: Decimal | int | str
    ) -> None:
        """One minute bar, as the replay delivers it: clock to its close, then settle."""
        self.clock.set(minute_start + timedelta(minutes=1))
        self.engine.on_bar(bar(symbol, minute_start, close))
        await self.engine.settle()


async def build_engine(
    tmp_path: Path,
    *,
    start: datetime | None = None,
    history: dict[str, list[Bar]] | None = None,
    risk: dict[str, Any] | None = None,
    strategy: ScriptedStrategy | None = None,
    flatten_deadline_s: float = 3.0,
    watchdog: WatchdogLimits | None = None,
) -> EngineParts:
    """A ``TradingEngine`` (not started) on a persisted simulator in ``tmp_path``: building a
    second one on the same directory is a restart."""
    clock = ReplayClock(start or ny(11))
    exchange = make_exchange(clock, tmp_path / "sim.jsonl")
    clock.set(exchange.last_ts)
    broker = FaultyBroker(SimBroker(exchange))
    feed = ScriptedFeed(history)
    strategy = strategy or ScriptedStrategy()
    bus = EventBus()
    journal = await Journal.open(tmp_path / "journal.sqlite", SystemClock(), flush_interval=0.02)
    engine = TradingEngine(
        mode="sim",
        broker=broker,
        feed=feed,
        strategies=StrategyHost([strategy.spec(SYMBOLS)]),
        journal=journal,
        bus=bus,
        clock=clock,
        risk=_risk_settings(risk),
        settings=EngineSettings(flatten_deadline_s=flatten_deadline_s),
        storage=StorageSettings(data_dir=tmp_path, write_behind_ms=20),
        allowed_symbols=list(SYMBOLS),
        extra_sinks=[broker.sim],
        watchdog=watchdog,
    )
    parts = EngineParts(engine, clock, broker, feed, strategy, bus, journal)
    bus.subscribe(Event, parts.events.append)
    return parts


def history_bars(symbol: str, closes: list[int], end: datetime) -> list[Bar]:
    """Minute bars ending just before ``end``, oldest first."""
    count = len(closes)
    return [
        bar(symbol, end - timedelta(minutes=count - i), close) for i, close in enumerate(closes)
    ]


@asynccontextmanager
async def priced_execution(tmp_path: Path) -> AsyncIterator[ExecParts]:
    """``build_execution`` with AAPL at 100 and MSFT at 200, closed afterwards."""
    p = await build_execution(tmp_path)
    p.price("AAPL", 100)
    p.price("MSFT", 200)
    try:
        yield p
    finally:
        await p.close()
