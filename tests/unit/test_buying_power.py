"""The gate's buying power: the broker's last figure moved by every fill and open order
since, refreshed from the broker after each batch of fills."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from engine.bus import EventBus
from engine.buying_power import BuyingPower, margin_buying_power, opening_qty
from engine.domain import Account, Fill, OrderStatus, OrderType, Side
from engine.events import FillReceived, OrderUpdated
from engine.order_book import OrderBook
from engine.orders import Order
from engine.portfolio import Portfolio
from tests.support.app import wait_for

D = Decimal
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def account(buying_power: str, cash: str = "5000") -> Account:
    return Account(equity=D(cash), cash=D(cash), buying_power=D(buying_power), last_equity=D(cash))


class Parts:
    """A ``BuyingPower`` over a real portfolio, order book and bus; the broker's answers are
    queued in ``answers`` and counted in ``fetches``."""

    def __init__(self, cash: str = "5000") -> None:
        self.needed = True
        self.portfolio = Portfolio(cash=D(cash))
        self.orders = OrderBook()
        self.bus = EventBus()
        self.answers: list[Account] = []
        self.fetches = 0
        self.during_fetch: list[Any] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.bp = BuyingPower(
            portfolio=self.portfolio,
            orders=self.orders,
            bus=self.bus,
            fetch=self.fetch,
            spawn=self.spawn,
            wanted=lambda: self.needed,
        )

    async def fetch(self) -> Account | None:
        self.fetches += 1
        for act in self.during_fetch:
            act()
        self.during_fetch.clear()
        return self.answers.pop(0) if self.answers else None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    def fill(self, symbol: str, side: Side, qty: str, price: str, n: int = 1) -> None:
        fill = Fill(f"x{symbol}{n}", f"c{symbol}", "b1", symbol, side, D(qty), D(price), T0)
        realized = self.portfolio.apply_fill(fill)
        self.bus.publish(
            FillReceived(
                ts=T0, fill=fill, position_qty=self.portfolio.qty(symbol), realized_pnl=realized
            )
        )

    def order(self, cid: str, symbol: str, side: Side, qty: str, **kw: Any) -> Order:
        order = Order(cid, symbol, side, D(qty), T0, **kw)
        self.orders.add(order)
        return order


async def test_available_when_a_fill_lands_after_the_snapshot_then_moves_by_margin_rule() -> None:
    # Before: the figure was the last broker snapshot until the next 30 s refresh, so at
    # replay speed the gate passed orders the broker then rejected.
    p = Parts()
    p.portfolio.mark("MSFT", D(420))
    p.bp.anchor(account("10000"))

    p.portfolio.apply_fill(Fill("x1", "c1", "b1", "MSFT", Side.BUY, D(10), D(420), T0))

    # 2 x equity (5,000) - gross (4,200) = 5,800: the fill used 4,200 of it.
    assert p.bp.available() == D(5800)
    p.portfolio.mark("MSFT", D(400))  # a long falls 20: 2 x -200 - (-200)
    assert p.bp.available() == D(5600)


async def test_available_when_orders_are_open_then_their_opening_part_is_reserved() -> None:
    p = Parts()
    p.portfolio.mark("AAPL", D(200))
    p.portfolio.apply_fill(Fill("x1", "c0", "b0", "AAPL", Side.BUY, D(5), D(200), T0))
    p.bp.anchor(account("9000"))

    p.order("c1", "AAPL", Side.BUY, "3")  # still PENDING: not yet answered by the broker
    p.order("c2", "AAPL", Side.SELL, "8", order_type=OrderType.LIMIT, limit_price=D(210))
    # The buy opens 3 x 200; the sell closes the 5 held and opens 3 short at its limit.
    assert p.bp.available() == D(9000) - 3 * D(200) - 3 * D(210)
    assert opening_qty(D(5), Side.SELL, D(8)) == D(3)
    assert margin_buying_power(D(100), D(50), D(10)) == D(140)


async def test_available_when_no_snapshot_yet_then_zero_and_floored_at_zero() -> None:
    p = Parts()
    assert p.bp.available() == D(0)
    p.bp.anchor(account("100"))
    p.portfolio.apply_fill(Fill("x1", "c1", "b1", "SPY", Side.BUY, D(1), D(590), T0))
    assert p.bp.available() == D(0)


async def test_anchor_when_broker_floors_at_zero_then_recovery_counts_from_our_estimate() -> None:
    p = Parts(cash="1000")
    p.portfolio.apply_fill(Fill("x1", "c1", "b1", "SPY", Side.BUY, D(4), D(590), T0))
    p.bp.anchor(account("0", cash="-1360"))  # 2 x 1,000 - 2,360 = -360, shown as 0
    p.portfolio.mark("SPY", D(600))  # +40 equity and +40 gross: the estimate moves +40

    assert p.bp.available() == D(0)  # still 320 short, not 40 available


async def test_refresh_when_fills_arrive_in_a_batch_then_one_snapshot_is_adopted() -> None:
    p = Parts()
    p.portfolio.mark("AAPL", D(100))
    p.bp.anchor(account("10000"))
    p.answers.append(account("8980"))  # the broker's view after the fills

    for n in range(3):
        p.fill("AAPL", Side.BUY, "10", "100", n)
    await wait_for(lambda: p.fetches == 1 and not p.bp.refreshing)

    assert p.bp.available() == D(8980)
    assert p.fetches == 1


async def test_refresh_when_an_order_changes_during_request_then_snapshot_not_adopted() -> None:
    p = Parts()
    p.bp.anchor(account("10000"))
    order = p.order("c1", "AAPL", Side.BUY, "1", order_type=OrderType.LIMIT, limit_price=D(1))
    order.status = OrderStatus.SUBMITTED
    p.answers.append(account("123"))

    def cancelled() -> None:  # our cancel lands while the request is out
        order.status = OrderStatus.CANCELLED
        p.bus.publish(
            OrderUpdated(
                ts=T0,
                client_order_id="c1",
                symbol="AAPL",
                side=Side.BUY,
                qty=D(1),
                status=order.status,
                filled_qty=D(0),
            )
        )

    p.during_fetch.append(cancelled)
    await p.bp.refresh()

    assert p.bp.available() == D(10000)  # the old anchor plus our own change


async def test_refresh_when_no_order_can_need_it_then_fills_do_not_ask_the_broker() -> None:
    # During a flatten every order only reduces: its thousands of fills must not spend the
    # broker's request budget on account reads.
    p = Parts()
    p.portfolio.mark("AAPL", D(100))
    p.bp.anchor(account("10000"))
    p.needed = False

    p.fill("AAPL", Side.BUY, "10", "100")
    for _ in range(5):
        await asyncio.sleep(0)

    assert p.fetches == 0
    assert not p.bp.refreshing
    assert p.bp.available() == D(9000)  # our own figure still moved
