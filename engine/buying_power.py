"""The risk gate's buying power: the broker's last figure, moved by everything we have done
since.

A broker snapshot (``Account.buying_power``) is only as fresh as its last request: between
two, every fill, every open order and every price move changes what is really available. The
gate therefore reads ``available()``: the broker's figure plus the change, since that
snapshot, of our own estimate by the margin rule below (computed from the portfolio and the
open orders, so a new order reserves its cost the moment it is recorded, before the broker
has answered). After each batch of fills the figure is refreshed from the broker.

The estimate is the simulator's rule (``engine.sim.account``), close to Reg T margin:
``MARGIN_MULTIPLIER * equity - gross exposure - the opening part of every open order`` at its
limit or the last price. Only its changes are used, so a broker with another rule still
anchors the figure; the rule decides how fills and prices move it until the next snapshot.

A snapshot is adopted only when it cannot be mixed with our own changes: none of our orders is
waiting for the broker's answer and no fill or order change was applied while the request was
out. Otherwise the previous anchor stays and the next fill batch asks again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from typing import Any

from engine.bus import EventBus
from engine.domain import ZERO, Account, OrderStatus, Side
from engine.events import FillReceived, OrderUpdated
from engine.order_book import OrderBook
from engine.portfolio import Portfolio

log = logging.getLogger(__name__)

MARGIN_MULTIPLIER = Decimal(2)
MIN_REFRESH_INTERVAL_S = 1.0
"""At most one refresh after fills per second, so a burst of fills does not spend the broker's
request budget on account reads (and none while ``wanted`` says no order can need it)."""


def opening_qty(position_qty: Decimal, side: Side, qty: Decimal) -> Decimal:
    """The part of an order of ``qty`` on ``side`` that opens or adds exposure rather than
    reducing the signed position ``position_qty``."""
    reducible = max(ZERO, -position_qty) if side is Side.BUY else max(ZERO, position_qty)
    return qty - min(qty, reducible)


def margin_buying_power(equity: Decimal, gross: Decimal, reserved: Decimal) -> Decimal:
    """The margin rule before the floor at zero (see the module doc)."""
    return MARGIN_MULTIPLIER * equity - gross - reserved


class BuyingPower:
    def __init__(
        self,
        *,
        portfolio: Portfolio,
        orders: OrderBook,
        bus: EventBus,
        fetch: Callable[[], Awaitable[Account | None]],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        wanted: Callable[[], bool] = lambda: True,
    ) -> None:
        self._portfolio = portfolio
        self._orders = orders
        self._fetch = fetch
        self._spawn = spawn
        self._needed = wanted
        self._broker: Decimal | None = None
        """The broker's figure at the anchor, floor undone where we can (see ``anchor``)."""
        self._local_at_anchor = ZERO
        self._changes = 0
        self._refreshing = False
        self._wanted = False
        self._retry = False
        self._last_refresh: float | None = None
        self.refreshes = 0
        self._unsubscribe = [
            bus.subscribe(FillReceived, self._on_fill),
            bus.subscribe(OrderUpdated, self._on_order),
        ]

    @property
    def refreshing(self) -> bool:
        """A refresh after fills is waiting or under way."""
        return self._refreshing

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    # -- the figure ---------------------------------------------------------------------

    def estimate(self) -> Decimal:
        """Our own margin-rule figure (unfloored) from the book and every open order."""
        portfolio = self._portfolio
        reserved = ZERO
        for order in self._orders.open_orders():
            price = (
                order.limit_price
                if order.limit_price is not None
                else portfolio.last_price(order.symbol)
            )
            if price is not None:
                opening = opening_qty(portfolio.qty(order.symbol), order.side, order.remaining_qty)
                reserved += opening * price
        return margin_buying_power(portfolio.equity, portfolio.gross_exposure, reserved)

    def available(self) -> Decimal:
        """What the gate may spend now; zero until the broker has given a figure."""
        if self._broker is None:
            return ZERO
        return max(ZERO, self._broker + self.estimate() - self._local_at_anchor)

    def anchor(self, account: Account) -> None:
        """Adopt a broker snapshot taken while our book matched the broker's."""
        local = self.estimate()
        broker = account.buying_power
        if broker <= ZERO:
            # The broker floors its figure at zero; below it, our own rule is the best guess
            # of how far (so a price move back up is not counted from zero).
            broker = min(ZERO, local)
        self._broker, self._local_at_anchor = broker, local

    # -- refreshing ---------------------------------------------------------------------

    async def refresh(self) -> Account | None:
        """Ask the broker; adopt its figure unless our own changes raced the request."""
        changes, in_flight = self._changes, self._in_flight()
        self._last_refresh = asyncio.get_running_loop().time()
        self.refreshes += 1
        account = await self._fetch()
        if account is None:
            return None
        if in_flight or self._in_flight() or self._changes != changes:
            # Keep the last anchor; the next fill or order change asks again.
            self._retry = True
        else:
            self._retry = False
            self.anchor(account)
        return account

    def _in_flight(self) -> bool:
        return any(o.status is OrderStatus.PENDING for o in self._orders.open_orders())

    def _on_fill(self, _event: FillReceived) -> None:
        self._changes += 1
        self._request()

    def _on_order(self, _event: OrderUpdated) -> None:
        self._changes += 1
        if self._retry:
            self._request()

    def _request(self) -> None:
        if not self._needed():
            return  # no order needs it now (a flatten): the request budget goes to the flatten
        self._wanted = True
        if not self._refreshing:
            self._refreshing = True
            self._spawn(self._refresh_after_fills())

    async def _refresh_after_fills(self) -> None:
        """One refresh per batch of fills: let the batch land (and the minimum interval
        pass), then ask; a fill during the request asks once more."""
        loop = asyncio.get_running_loop()
        try:
            while self._wanted:
                self._wanted = False
                for _ in range(3):  # the rest of the batch is already on its way in
                    await asyncio.sleep(0)
                if self._last_refresh is not None:
                    wait = MIN_REFRESH_INTERVAL_S - (loop.time() - self._last_refresh)
                    if wait > 0:
                        await asyncio.sleep(wait)
                await self.refresh()
        finally:
            self._refreshing = False
