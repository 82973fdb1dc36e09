"""The broker port on top of the in-process exchange simulator.

Every call goes straight to ``SimExchange`` (after an optional simulated latency); trade
updates flow from the exchange's listener through a queue to ``trade_updates()``. The
mapping from venue records to port types is public so the fake Alpaca server can reuse it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Final

from config.settings import SimSettings
from engine.broker.port import BrokerOrder, CloseResult, StreamGap, TradeUpdate
from engine.calendar import MarketCalendar
from engine.clock import Clock
from engine.domain import (
    Account,
    Bar,
    Fill,
    MarketClock,
    OrderRequest,
    OrderStatus,
    Position,
    Tick,
    TradingSession,
)
from engine.sim.exchange import SimExchange
from engine.sim.models import (
    CommissionModel,
    ExecutionRecord,
    OrderRecord,
    SlippageModel,
    TradeUpdateRecord,
)

STATUS_MAP: Final[dict[str, OrderStatus]] = {
    "new": OrderStatus.SUBMITTED,
    "accepted": OrderStatus.SUBMITTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "pending_cancel": OrderStatus.CANCEL_PENDING,
}
"""Alpaca order status words -> our order state machine."""

Sleep = Callable[[float], Awaitable[None]]


class _Stop:
    """Queued by ``close()`` to end a running ``trade_updates()`` iterator."""


_STOP: Final = _Stop()


def to_broker_order(record: OrderRecord) -> BrokerOrder:
    """A venue order record as the port's ``BrokerOrder``."""
    try:
        status = STATUS_MAP[record.status]
    except KeyError:
        raise ValueError(f"order {record.id}: unknown status {record.status!r}") from None
    return BrokerOrder(
        broker_order_id=record.id,
        client_order_id=record.client_order_id,
        symbol=record.symbol,
        side=record.side,
        qty=record.qty,
        order_type=record.type,
        time_in_force=record.time_in_force,
        limit_price=record.limit_price,
        status=status,
        broker_status=record.status,
        filled_qty=record.filled_qty,
        filled_avg_price=record.filled_avg_price,
        submitted_at=record.submitted_at,
        updated_at=record.updated_at,
    )


def to_trade_update(record: TradeUpdateRecord) -> TradeUpdate:
    """A venue trade-update record as the port's ``TradeUpdate``."""
    return TradeUpdate(
        event=record.event,
        order=to_broker_order(record.order),
        ts=record.timestamp,
        execution_id=record.execution_id,
        price=record.price,
        qty=record.qty,
        position_qty=record.position_qty,
        commission=record.commission,
    )


def to_fill(record: ExecutionRecord) -> Fill:
    """A venue execution as the port's ``Fill``."""
    return Fill(
        execution_id=record.id,
        client_order_id=record.client_order_id,
        broker_order_id=record.order_id,
        symbol=record.symbol,
        side=record.side,
        qty=record.qty,
        price=record.price,
        ts=record.transaction_time,
        commission=record.commission,
    )


class SimBroker:
    """``engine.broker.port.Broker`` backed by a ``SimExchange`` in the same process."""

    name = "sim"

    def __init__(
        self, exchange: SimExchange, *, latency_ms: float = 0.0, sleep: Sleep = asyncio.sleep
    ) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms}")
        self._exchange = exchange
        self._latency_s = latency_ms / 1000.0
        self._sleep = sleep
        self._updates: asyncio.Queue[TradeUpdate | _Stop] = asyncio.Queue()
        self._closed = False
        self._placed: list[asyncio.Future[None]] = []
        """Callers of ``submit_order`` waiting for the save their orders share."""
        self._held: list[TradeUpdate] | None = None
        """While that save runs: the updates it reports, queued after its callers resume."""
        exchange.set_listener(self._on_update)

    @classmethod
    def create(
        cls,
        state_path: Path | None,
        sim_settings: SimSettings,
        clock: Clock,
        calendar: MarketCalendar | None = None,
    ) -> SimBroker:
        """Build the exchange and the broker from the ``SIM_*`` settings."""
        exchange = SimExchange(
            state_path,
            starting_cash=sim_settings.starting_cash,
            slippage=SlippageModel(sim_settings.slippage_bps),
            commission=CommissionModel(
                per_share=sim_settings.commission_per_share,
                minimum=sim_settings.commission_min,
            ),
            max_fill_qty=sim_settings.max_fill_qty,
            calendar=calendar or MarketCalendar(),
            clock=clock,
        )
        return cls(exchange, latency_ms=sim_settings.latency_ms)

    @property
    def exchange(self) -> SimExchange:
        return self._exchange

    # -- market data in (called by the feed fan-out before the strategy sees the data) ------

    def on_bar(self, bar: Bar) -> None:
        self._exchange.on_bar(bar)

    def on_tick(self, tick: Tick) -> None:
        self._exchange.on_price(tick.symbol, tick.price, tick.ts)

    # -- the port ---------------------------------------------------------------------------

    async def connect(self) -> None:
        self._closed = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._exchange.flush()
            self._updates.put_nowait(_STOP)

    async def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Placed at once; answered once saved. The orders placed in one turn of the loop (a
        minute's burst, each in its own task) share one save of the state file, made at the
        start of the next turn, instead of one each."""
        await self._delay()
        record = self._exchange.submit(
            request.symbol,
            request.side,
            request.qty,
            request.order_type,
            request.time_in_force,
            request.limit_price,
            request.client_order_id,
            hold=True,
        )
        loop = asyncio.get_running_loop()
        saved = loop.create_future()
        if not self._placed:
            loop.call_soon(self._save_placed)
        self._placed.append(saved)
        await saved
        return to_broker_order(record)

    async def cancel_all_orders(self) -> int:
        await self._delay()
        return len(self._exchange.cancel_all())

    async def close_all_positions(self, cancel_orders: bool = True) -> list[CloseResult]:
        await self._delay()
        return [
            CloseResult(
                symbol=outcome.symbol,
                ok=200 <= outcome.status < 300,
                status=outcome.status,
                order=None if outcome.order is None else to_broker_order(outcome.order),
                message=outcome.message,
            )
            for outcome in self._exchange.close_all(cancel_orders=cancel_orders)
        ]

    async def get_positions(self) -> list[Position]:
        await self._delay()
        return self._exchange.positions()

    async def get_open_orders(self) -> list[BrokerOrder]:
        await self._delay()
        return [to_broker_order(o) for o in self._exchange.open_orders()]

    async def get_orders_since(self, since: datetime) -> list[BrokerOrder]:
        await self._delay()
        return [to_broker_order(o) for o in self._exchange.orders_since(since)]

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        await self._delay()
        record = self._exchange.order_by_client_id(client_order_id)
        return None if record is None else to_broker_order(record)

    async def get_fills_since(self, since: datetime) -> list[Fill]:
        await self._delay()
        return [to_fill(e) for e in self._exchange.executions_since(since)]

    async def get_account(self) -> Account:
        await self._delay()
        return self._exchange.account()

    async def get_clock(self) -> MarketClock:
        await self._delay()
        self._exchange.on_clock()
        return self._exchange.calendar.clock(self._exchange.clock.now())

    async def get_calendar(self, start: date, end: date) -> list[TradingSession]:
        await self._delay()
        return self._exchange.calendar.sessions(start, end)

    async def trade_updates(self) -> AsyncIterator[TradeUpdate | StreamGap]:
        """Every update since this broker was built, in order; ends after ``close()``.
        The exchange is in-process, so there are no gaps to report."""
        while True:
            item = await self._updates.get()
            if isinstance(item, _Stop):
                if self._closed:
                    return
                continue
            yield item

    # -- internals --------------------------------------------------------------------------

    def _on_update(self, record: TradeUpdateRecord) -> None:
        update = to_trade_update(record)
        if self._held is not None:
            self._held.append(update)
        else:
            self._updates.put_nowait(update)

    def _save_placed(self) -> None:
        """Save the orders placed since the last save (unless a call since did), then answer
        their callers and queue their updates, in that order, as when each was saved on its
        own: a reply comes before the stream's updates of its order."""
        placed, self._placed = self._placed, []
        held = self._held = []
        try:
            self._exchange.commit()
        except Exception as exc:  # the state file cannot be written: every caller hears it
            for saved in placed:
                if not saved.done():
                    saved.set_exception(exc)
            return
        finally:
            self._held = None
        for saved in placed:
            if not saved.done():
                saved.set_result(None)
        for update in held:
            self._updates.put_nowait(update)

    async def _delay(self) -> None:
        if self._latency_s > 0:
            await self._sleep(self._latency_s)
