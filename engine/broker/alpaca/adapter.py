"""The broker port on Alpaca: each port method as alpaca-py calls and conversions.

Requests go through ``RestCalls`` (``calls.py``: thread pool, timeouts, breaker, budget,
health); JSON becomes domain types in ``convert.py``; request bodies are built in
``payloads.py``; ``OrderIds`` remembers which client order id each Alpaca order carries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from alpaca.common.enums import Sort
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetCalendarRequest, GetOrdersRequest

from engine.broker.alpaca import convert
from engine.broker.alpaca.calls import MAX_WORKERS, RestCalls
from engine.broker.alpaca.convert import json_list, json_object
from engine.broker.alpaca.order_ids import OrderIds
from engine.broker.alpaca.payloads import iso, order_body, same_order
from engine.broker.alpaca.trade_stream import TradeUpdateStream
from engine.broker.port import BrokerOrder, CloseResult, RejectedUpdate, StreamGap, TradeUpdate
from engine.broker.resilience import CircuitBreaker, RequestBudget, RetryPolicy, Sleep
from engine.clock import Clock
from engine.domain import Account, Fill, MarketClock, OrderRequest, Position, TradingSession
from engine.errors import BrokerError, DuplicateClientOrderId, OrderNotFound
from engine.health import BrokerHealth

log = logging.getLogger(__name__)

ORDERS_PAGE = 500
ACTIVITIES_PAGE = 100


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
        self.calls = RestCalls(
            client_factory=client_factory,
            clock=clock,
            timeout_s=timeout_s,
            breaker=breaker,
            budget=budget,
            retry=retry,
            max_workers=max_workers,
            sleep=sleep,
            rng=rng,
        )
        self._stream = stream
        if stream is not None and stream.liveness is None:
            stream.liveness = self.calls.health  # a dropped or silent stream: probe at once
        self._first_connect_wait_s = first_connect_wait_s
        self._ids = OrderIds()

    @property
    def stream(self) -> TradeUpdateStream | None:
        return self._stream

    @property
    def health(self) -> BrokerHealth:
        return self.calls.health

    @property
    def breaker(self) -> CircuitBreaker:
        return self.calls.breaker

    @property
    def timeouts(self) -> int:
        return self.calls.timeouts

    @property
    def budget(self) -> RequestBudget:
        return self.calls.budget

    # -- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        self.calls.open()
        if self._stream is not None:
            up = await self._stream.start(wait_s=self._first_connect_wait_s)
            if not up:
                log.warning("trade-update stream not up yet: %s", self._stream.health.detail)

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
        self.calls.close()

    # -- orders -------------------------------------------------------------------------

    async def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Idempotent through ``client_order_id``: when Alpaca already has an order with
        this id (a retry whose first try got through, or a restart re-sending it) and it is
        the same order, that order is returned; a different one raises
        ``DuplicateClientOrderId``."""
        body = order_body(request)

        async def attempt(_: int) -> BrokerOrder:
            try:
                return await self.calls.call(
                    "submit order", lambda c: self._order(c.post("/orders", body))
                )
            except DuplicateClientOrderId:
                existing = await self.get_order_by_client_id(request.client_order_id)
                if existing is None or not same_order(existing, request):
                    raise
                log.info("Alpaca already had %s; using that order", request.client_order_id)
                return existing

        return await self.calls.retrying(attempt)

    async def cancel_all_orders(self) -> int:
        """Alpaca answers 207 with a status per order: only the 2xx ones count. When some
        were refused, open orders are read again to say which are still working."""
        replies = await self.calls.get(
            "cancel all orders", lambda c: json_list(c.cancel_orders() or []), safety=True
        )
        accepted = sum(1 for item in replies if convert.item_ok(item))
        refused = len(replies) - accepted
        if refused:
            still_open = await self.get_open_orders()
            log.warning(
                "cancel-all: Alpaca refused %d of %d cancels; %d orders still open: %s",
                refused,
                len(replies),
                len(still_open),
                ", ".join(o.client_order_id for o in still_open[:20]),
            )
        return accepted

    async def close_all_positions(self, cancel_orders: bool = True) -> list[CloseResult]:
        # Not retried: a lost reply would send a second set of closing orders.
        results: list[CloseResult] = await self.calls.call(
            "close all positions",
            lambda c: [
                convert.close_result(item)
                for item in json_list(c.close_all_positions(cancel_orders) or [])
            ],
            safety=True,
        )
        for result in results:
            if result.order is not None:
                self._ids.remember(result.order)
        return results

    # -- queries ------------------------------------------------------------------------

    async def get_positions(self) -> list[Position]:
        return await self.calls.get(
            "positions", lambda c: [convert.position(p) for p in json_list(c.get_all_positions())]
        )

    async def get_open_orders(self) -> list[BrokerOrder]:
        """Every open order, page by page (Alpaca gives at most 500 a request)."""
        return await self._orders("open orders", QueryOrderStatus.OPEN, after=None)

    async def get_orders_since(self, since: datetime) -> list[BrokerOrder]:
        """Every order submitted at or after ``since``, oldest first, page by page."""
        after = since - timedelta(milliseconds=1)  # Alpaca's ``after`` is exclusive
        return await self._orders("orders", QueryOrderStatus.ALL, after=after)

    async def _orders(
        self, label: str, status: QueryOrderStatus, *, after: datetime | None
    ) -> list[BrokerOrder]:
        """Alpaca pages orders by submission time: ask oldest first and continue after the
        last one seen, so the request count grows with pages, not orders."""
        seen: dict[str, BrokerOrder] = {}
        while True:
            query = GetOrdersRequest(
                status=status, after=after, limit=ORDERS_PAGE, direction=Sort.ASC, nested=False
            )
            page = await self.calls.get(label, functools.partial(self._orders_page, query))
            fresh = [o for o in page if o.broker_order_id not in seen]
            seen.update((o.broker_order_id, o) for o in fresh)
            if len(page) < ORDERS_PAGE:
                break
            if not fresh:
                log.warning(
                    "%s: over %d orders share one time; the list may miss some", label, ORDERS_PAGE
                )
                break
            # Orders sharing the last timestamp may straddle pages: step back a hair and
            # drop the ones already seen.
            after = max(o.submitted_at for o in page) - timedelta(microseconds=1)
        return sorted(seen.values(), key=lambda o: o.submitted_at)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        try:
            return await self.calls.get(
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
                "after": iso(since - timedelta(milliseconds=1)),
                "direction": "asc",
                "page_size": ACTIVITIES_PAGE,
            }
            if token is not None:
                params["page_token"] = token
            page = await self.calls.get("fill activities", functools.partial(_activities, params))
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
            client_id = self._ids.client_id(str(activity.get("order_id", "")))
            if client_id is None:
                log.warning("fill activity for unknown order %s skipped", activity.get("order_id"))
                continue
            try:
                fills.append(convert.fill_activity(activity, client_id))
            except (ValueError, ArithmeticError) as exc:
                raise BrokerError(f"unexpected fill activity from Alpaca: {exc}") from None
        return sorted(fills, key=lambda f: f.ts)

    async def get_account(self) -> Account:
        return await self.calls.get(
            "account", lambda c: convert.account(json_object(c.get_account()))
        )

    async def get_clock(self) -> MarketClock:
        return await self.calls.get(
            "clock", lambda c: convert.market_clock(json_object(c.get_clock()))
        )

    async def get_calendar(self, start: date, end: date) -> list[TradingSession]:
        query = GetCalendarRequest(start=start, end=end)
        return await self.calls.get(
            "calendar", lambda c: [convert.session(d) for d in json_list(c.get_calendar(query))]
        )

    async def trade_updates(self) -> AsyncIterator[TradeUpdate | StreamGap | RejectedUpdate]:
        if self._stream is None:
            raise RuntimeError("this AlpacaBroker has no trade-update stream")
        async for item in self._stream.updates():
            if isinstance(item, TradeUpdate):
                self._ids.remember(item.order)
            yield item

    # -- order ids ----------------------------------------------------------------------

    def _order(self, raw: object) -> BrokerOrder:
        return self._ids.remember(convert.order(json_object(raw)))

    async def _learn_client_ids(self, order_ids: set[str], since: datetime) -> None:
        """Map fills' order ids to client order ids: one paged order listing teaches most at
        once (a flatten or a restart can bring hundreds); single fetches only for orders
        placed before that window."""
        missing = self._ids.unknown(order_ids)
        if len(missing) > 1:
            await self.get_orders_since(since - timedelta(days=1))
            missing = self._ids.unknown(missing)
        for order_id in sorted(missing):
            try:
                await self.calls.get("order", functools.partial(self._order_by_id, order_id))
            except OrderNotFound:
                log.warning("Alpaca has fills for order %s but not the order", order_id)

    def _orders_page(self, query: GetOrdersRequest, client: TradingClient) -> list[BrokerOrder]:
        return [self._order(o) for o in json_list(client.get_orders(query))]

    def _order_by_id(self, order_id: str, client: TradingClient) -> BrokerOrder:
        return self._order(client.get_order_by_id(order_id))


def _activities(params: dict[str, Any], client: TradingClient) -> list[Mapping[str, Any]]:
    # TradingClient has no method for account activities; its generic GET does the rest.
    return json_list(client.get("/account/activities/FILL", params) or [])
