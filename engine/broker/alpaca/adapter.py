"""The broker port on Alpaca: alpaca-py's ``TradingClient`` off the event loop, with bounds.

Every REST call runs on a small dedicated thread pool (not ``asyncio.to_thread``: the loop's
default executor also resolves host names for the WebSocket clients, and hung broker calls
must not starve it). Each pool thread has its own ``TradingClient`` (a ``requests.Session``
is not guaranteed thread-safe), whose session carries a real socket timeout, so a thread
stuck on a dead connection is freed after ``ALPACA_REQUEST_TIMEOUT_S``; on top of that every
call has an ``asyncio.wait_for`` hard limit of the same length, so the loop never waits
longer whatever the thread does. alpaca-py's own retry (three blocking 3 s sleeps on
429/504, POSTs included) is switched off: our ``RetryPolicy`` decides, honouring
Retry-After, and only for idempotent calls.

Around each call: the circuit breaker (fail fast while Alpaca is down), the request budget
(a token bucket under Alpaca's 200 requests a minute; it waits, it never exceeds), then the
call. Outcomes land in ``health`` (``engine.health.BrokerHealth``), which status, heartbeat
and the outage watchdog read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from alpaca.common.enums import Sort
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus
from alpaca.trading.enums import TimeInForce as AlpacaTif
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)
from alpaca.trading.requests import OrderRequest as AlpacaOrderRequest
from pydantic import ValidationError

from engine.broker.alpaca import convert
from engine.broker.alpaca.rest import guarded
from engine.broker.alpaca.trade_stream import TradeUpdateStream
from engine.broker.port import BrokerOrder, CloseResult, StreamGap, TradeUpdate
from engine.broker.resilience import (
    BreakerState,
    CircuitBreaker,
    RequestBudget,
    RetryPolicy,
    Sleep,
    retry_call,
)
from engine.clock import Clock
from engine.domain import (
    Account,
    Fill,
    MarketClock,
    OrderRequest,
    OrderType,
    Position,
    TradingSession,
)
from engine.errors import (
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    CircuitOpen,
    DuplicateClientOrderId,
    OrderNotFound,
    RateLimited,
)
from engine.health import BrokerHealth

log = logging.getLogger(__name__)
T = TypeVar("T")

ORDERS_PAGE = 500
ACTIVITIES_PAGE = 100
MAX_WORKERS = 8
_KNOWN_IDS = 20_000
_TIF = {"day": AlpacaTif.DAY, "gtc": AlpacaTif.GTC, "ioc": AlpacaTif.IOC}


@dataclass(frozen=True, slots=True)
class AlpacaStatus:
    """A snapshot for status and heartbeat reports."""

    breaker: BreakerState
    breaker_retry_in_s: float
    consecutive_failures: int
    last_error: str
    round_trip_s: float | None
    in_flight: int
    timeouts: int
    budget_available: float
    stream_connected: bool
    stream_detail: str
    stream_gaps: int


class AlpacaBroker:
    """``engine.broker.port.Broker`` on Alpaca's Trading API."""

    name = "alpaca"

    def __init__(
        self,
        *,
        client_factory: Callable[[], TradingClient],
        stream: TradeUpdateStream | None,
        clock: Clock,
        timeout_s: float,
        breaker: CircuitBreaker,
        budget: RequestBudget,
        retry: RetryPolicy | None = None,
        max_workers: int = MAX_WORKERS,
        first_connect_wait_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._factory = client_factory
        self._stream = stream
        self._clock = clock
        self._timeout_s = timeout_s
        self.breaker = breaker
        self.budget = budget
        self._retry = retry or RetryPolicy()
        self._max_workers = max_workers
        self._first_connect_wait_s = first_connect_wait_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.health = BrokerHealth()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._clients: list[TradingClient] = []
        self._clients_lock = threading.Lock()
        self._client_ids: dict[str, str] = {}
        """Alpaca order id -> client order id: FILL activities name only the former."""
        self.in_flight = 0
        self.timeouts = 0

    @property
    def stream(self) -> TradeUpdateStream | None:
        return self._stream

    def status(self) -> AlpacaStatus:
        stream = self._stream
        return AlpacaStatus(
            breaker=self.breaker.state,
            breaker_retry_in_s=self.breaker.retry_in(),
            consecutive_failures=self.health.consecutive_failures,
            last_error=self.health.last_error,
            round_trip_s=self.health.round_trip_s,
            in_flight=self.in_flight,
            timeouts=self.timeouts,
            budget_available=self.budget.available,
            stream_connected=stream is not None and stream.connected,
            stream_detail=stream.health.detail if stream is not None else "no stream",
            stream_gaps=stream.gaps if stream is not None else 0,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        self._ensure_pool()
        if self._stream is not None:
            up = await self._stream.start(wait_s=self._first_connect_wait_s)
            if not up:
                log.warning("trade-update stream not up yet: %s", self._stream.health.detail)

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            # Threads stuck in a request end by their socket timeout; nobody waits for them.
            pool.shutdown(wait=False, cancel_futures=True)
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client._session.close()

    # -- orders -------------------------------------------------------------------------

    async def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Idempotent through ``client_order_id``: when Alpaca already has an order with
        this id (a retry whose first try got through, or a restart re-sending it) and it is
        the same order, that order is returned; a different one raises
        ``DuplicateClientOrderId``."""
        payload = _order_payload(request)

        async def attempt(_: int) -> BrokerOrder:
            try:
                return await self._call(
                    "submit order", lambda c: self._order(c.submit_order(payload))
                )
            except DuplicateClientOrderId:
                existing = await self.get_order_by_client_id(request.client_order_id)
                if existing is None or not _same_order(existing, request):
                    raise
                log.info("Alpaca already had %s; using that order", request.client_order_id)
                return existing

        return await self._retrying(attempt)

    async def cancel_order(self, broker_order_id: str) -> None:
        await self._retrying(
            lambda _: self._call("cancel order", lambda c: c.cancel_order_by_id(broker_order_id))
        )

    async def cancel_all_orders(self) -> int:
        replies = await self._retrying(
            lambda _: self._call("cancel all orders", lambda c: c.cancel_orders())
        )
        return len(replies or [])

    async def close_all_positions(self, cancel_orders: bool = True) -> list[CloseResult]:
        # Not retried: a lost reply would send a second set of closing orders.
        results: list[CloseResult] = await self._call(
            "close all positions",
            lambda c: [
                convert.close_result(item)
                for item in _list(c.close_all_positions(cancel_orders) or [])
            ],
        )
        for result in results:
            if result.order is not None:
                self._remember(result.order)
        return results

    async def close_position(self, symbol: str) -> BrokerOrder:
        return await self._call("close position", lambda c: self._order(c.close_position(symbol)))

    # -- queries ------------------------------------------------------------------------

    async def get_positions(self) -> list[Position]:
        return await self._get(
            "positions", lambda c: [convert.position(p) for p in _list(c.get_all_positions())]
        )

    async def get_open_orders(self) -> list[BrokerOrder]:
        query = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=ORDERS_PAGE, nested=False)
        return await self._get(
            "open orders", lambda c: [self._order(o) for o in _list(c.get_orders(query))]
        )

    async def get_orders_since(self, since: datetime) -> list[BrokerOrder]:
        """Every order submitted at or after ``since``, oldest first, page by page."""
        after = since - timedelta(milliseconds=1)  # Alpaca's ``after`` is exclusive
        seen: dict[str, BrokerOrder] = {}
        while True:
            query = GetOrdersRequest(
                status=QueryOrderStatus.ALL,
                after=after,
                limit=ORDERS_PAGE,
                direction=Sort.ASC,
                nested=False,
            )
            page = await self._get("orders", functools.partial(self._orders_page, query))
            fresh = [o for o in page if o.broker_order_id not in seen]
            seen.update((o.broker_order_id, o) for o in fresh)
            if len(page) < ORDERS_PAGE or not fresh:
                break
            # Orders sharing the last timestamp may straddle pages: step back a hair and
            # drop the ones already seen.
            after = max(o.submitted_at for o in page) - timedelta(microseconds=1)
        return sorted(seen.values(), key=lambda o: o.submitted_at)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        try:
            return await self._get(
                "order by client id",
                lambda c: self._order(c.get_order_by_client_id(client_order_id)),
            )
        except OrderNotFound:
            return None

    async def get_fills_since(self, since: datetime) -> list[Fill]:
        """Account activities of type FILL at or after ``since``, oldest first."""
        raw: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "after": _iso(since - timedelta(milliseconds=1)),
                "direction": "asc",
                "page_size": ACTIVITIES_PAGE,
            }
            if token is not None:
                params["page_token"] = token
            page = await self._get("fill activities", functools.partial(_activities, params))
            raw.extend(page)
            if len(page) < ACTIVITIES_PAGE:
                break
            next_token = str(page[-1].get("id", ""))
            if not next_token or next_token == token:
                break
            token = next_token
        await self._learn_client_ids({str(a.get("order_id", "")) for a in raw}, since)
        fills: list[Fill] = []
        for activity in raw:
            client_id = self._client_ids.get(str(activity.get("order_id", "")))
            if client_id is None:
                log.warning("fill activity for unknown order %s skipped", activity.get("order_id"))
                continue
            try:
                fills.append(convert.fill_activity(activity, client_id))
            except (ValueError, ArithmeticError) as exc:
                raise BrokerError(f"unexpected fill activity from Alpaca: {exc}") from None
        return sorted(fills, key=lambda f: f.ts)

    async def get_account(self) -> Account:
        return await self._get("account", lambda c: convert.account(_obj(c.get_account())))

    async def get_clock(self) -> MarketClock:
        return await self._get("clock", lambda c: convert.market_clock(_obj(c.get_clock())))

    async def get_calendar(self, start: date, end: date) -> list[TradingSession]:
        query = GetCalendarRequest(start=start, end=end)
        return await self._get(
            "calendar", lambda c: [convert.session(d) for d in _list(c.get_calendar(query))]
        )

    async def trade_updates(self) -> AsyncIterator[TradeUpdate | StreamGap]:
        if self._stream is None:
            raise RuntimeError("this AlpacaBroker has no trade-update stream")
        async for item in self._stream.updates():
            if isinstance(item, TradeUpdate):
                self._remember(item.order)
            yield item

    # -- the call path ------------------------------------------------------------------

    async def _get(self, label: str, fn: Callable[[TradingClient], T]) -> T:
        return await self._retrying(lambda _: self._call(label, fn))

    async def _retrying(self, op: Callable[[int], Awaitable[T]]) -> T:
        return await retry_call(op, self._retry, sleep=self._sleep, rng=self._rng)

    async def _call(self, label: str, fn: Callable[[TradingClient], T]) -> T:
        """One attempt: breaker, budget, then the request on the pool with a hard timeout."""
        try:
            probe = self.breaker.before_call()
        except CircuitOpen as exc:
            self.health.failure(self._clock.now(), self._clock.monotonic(), str(exc))
            raise
        started = self._clock.monotonic()
        outcome = "neutral"
        try:
            await self.budget.acquire()
            started = self._clock.monotonic()
            result = await self._run(label, fn)
            outcome = "ok"
            return result
        except (BrokerRejected, OrderNotFound):
            outcome = "ok"  # Alpaca answered: it is up, the request was wrong
            raise
        except RateLimited as exc:
            self.budget.defer(exc.retry_after if exc.retry_after is not None else 1.0)
            self.health.last_error = str(exc)
            self.health.last_error_at = self._clock.now()
            raise
        except BrokerError as exc:
            outcome = "failed"
            if isinstance(exc, BrokerTimeout):
                self.timeouts += 1  # the socket timeout or the hard limit, whichever came first
            self.breaker.record_failure(str(exc))
            self.health.failure(self._clock.now(), self._clock.monotonic(), str(exc))
            raise
        finally:
            if outcome == "ok":
                self.breaker.record_success()
                self.health.success(self._clock.now(), self._clock.monotonic() - started)
            elif outcome == "neutral" and probe:
                self.breaker.release_probe()

    async def _run(self, label: str, fn: Callable[[TradingClient], T]) -> T:
        pool = self._ensure_pool()
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(pool, self._in_thread, label, fn), self._timeout_s
            )
        except TimeoutError:
            raise BrokerTimeout(
                f"Alpaca did not answer {label} within {self._timeout_s:g} s"
            ) from None
        finally:
            self.in_flight -= 1

    def _in_thread(self, label: str, fn: Callable[[TradingClient], T]) -> T:
        client = self._thread_client()
        return guarded(label, self._timeout_s, lambda: fn(client))

    def _thread_client(self) -> TradingClient:
        client: TradingClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._factory()
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _ensure_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="alpaca-rest"
            )
        return self._pool

    # -- order ids ----------------------------------------------------------------------

    def _order(self, raw: object) -> BrokerOrder:
        record = convert.order(_obj(raw))
        self._remember(record)
        return record

    def _remember(self, record: BrokerOrder) -> None:
        ids = self._client_ids
        ids[record.broker_order_id] = record.client_order_id
        if len(ids) > _KNOWN_IDS:
            del ids[next(iter(ids))]

    async def _learn_client_ids(self, order_ids: set[str], since: datetime) -> None:
        """Map fills' order ids to client order ids: one paged order listing teaches most at
        once (a flatten or a restart can bring hundreds); single fetches only for orders
        placed before that window."""
        missing = order_ids - set(self._client_ids) - {""}
        if len(missing) > 1:
            await self.get_orders_since(since - timedelta(days=1))
            missing -= set(self._client_ids)
        for order_id in sorted(missing):
            try:
                await self._get("order", functools.partial(self._order_by_id, order_id))
            except OrderNotFound:
                log.warning("Alpaca has fills for order %s but not the order", order_id)

    def _orders_page(self, query: GetOrdersRequest, client: TradingClient) -> list[BrokerOrder]:
        return [self._order(o) for o in _list(client.get_orders(query))]

    def _order_by_id(self, order_id: str, client: TradingClient) -> BrokerOrder:
        return self._order(client.get_order_by_id(order_id))


# -- helpers ---------------------------------------------------------------------------------


def _obj(raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    return raw


def _list(raw: object) -> list[Mapping[str, Any]]:
    if not isinstance(raw, list):
        raise ValueError(f"expected a JSON array, got {type(raw).__name__}")
    return [_obj(item) for item in raw]


def _activities(params: dict[str, Any], client: TradingClient) -> list[Mapping[str, Any]]:
    # TradingClient has no method for account activities; its generic GET does the rest.
    return _list(client.get("/account/activities/FILL", params) or [])


def _order_payload(request: OrderRequest) -> AlpacaOrderRequest:
    common: dict[str, Any] = {
        "symbol": request.symbol,
        "qty": float(request.qty),
        "side": OrderSide.BUY if request.side.value == "buy" else OrderSide.SELL,
        "time_in_force": _TIF[request.time_in_force.value],
        "client_order_id": request.client_order_id,
    }
    try:
        if request.order_type is OrderType.LIMIT:
            if request.limit_price is None:
                raise BrokerRejected(f"{request.client_order_id}: a limit order needs a price")
            return LimitOrderRequest(limit_price=float(request.limit_price), **common)
        return MarketOrderRequest(**common)
    except ValidationError as exc:
        raise BrokerRejected(f"order {request.client_order_id} is invalid: {exc}") from None


def _same_order(existing: BrokerOrder, request: OrderRequest) -> bool:
    return (
        existing.symbol == request.symbol.upper()
        and existing.side is request.side
        and existing.qty == request.qty
    )


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
