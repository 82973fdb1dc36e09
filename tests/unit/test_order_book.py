"""OrderBook: the open-order index per symbol, broker-id links and pruning."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from engine.broker.port import BrokerOrder
from engine.domain import OrderStatus, OrderType, Side, TimeInForce
from engine.order_book import OrderBook, order_from_broker
from engine.orders import Order
from tests.unit.engine_stubs import ny, request

D = Decimal
S = OrderStatus
T0 = ny(10)


def order(
    cid: str,
    symbol: str = "AAPL",
    side: Side = Side.BUY,
    qty: int = 10,
    *,
    minutes: int = 0,
    status: S = S.SUBMITTED,
    broker_id: str = "",
) -> Order:
    o = Order.from_request(request(cid, symbol, side, qty), T0 + timedelta(minutes=minutes))
    o.status = status
    o.broker_order_id = broker_id
    return o


def test_open_orders_when_orders_in_several_symbols_then_indexed_per_symbol_oldest_first() -> None:
    book = OrderBook()
    late = order("a2", minutes=5)
    early = order("a1", minutes=1)
    msft = order("m1", "MSFT", minutes=3)
    book.add_all([late, early, msft, order("done", status=S.FILLED)])

    assert book.open_orders("AAPL") == [early, late]
    assert book.open_orders() == [early, msft, late]
    assert book.has_open("MSFT")
    assert not book.has_open("SPY")
    assert (len(book), "done" in book, "nope" in book) == (4, True, False)


def test_open_orders_when_an_order_closes_after_indexing_then_it_drops_out() -> None:
    book = OrderBook()
    o = order("a1")
    book.add(o)

    o.status = S.CANCELLED

    assert book.open_orders("AAPL") == []
    assert not book.has_open("AAPL")
    assert book.get("a1") is o  # still known, just not open


def test_open_qty_when_buys_and_sells_open_then_signed_remaining_sum() -> None:
    book = OrderBook()
    buy = order("b1", qty=10)
    buy.filled_qty = D(6)
    buy.status = S.PARTIALLY_FILLED
    sell = order("s1", side=Side.SELL, qty=3)
    book.add_all([buy, sell, order("m1", "MSFT", qty=50)])

    assert book.open_qty("AAPL") == D(1)  # +4 remaining on the buy, -3 on the sell
    assert book.open_qty("SPY") == D(0)


def test_by_broker_id_when_added_with_id_or_linked_later_then_found() -> None:
    book = OrderBook()
    known = order("a1", broker_id="b-1")
    pending = order("a2", status=S.PENDING)
    book.add_all([known, pending])

    book.link_broker_id(pending, "b-2")

    assert book.by_broker_id("b-1") is known
    assert book.by_broker_id("b-2") is pending
    assert pending.broker_order_id == "b-2"
    assert book.by_broker_id("b-3") is None


def test_prune_when_closed_orders_are_old_then_forgotten_and_open_ones_kept() -> None:
    book = OrderBook()
    old_closed = order("old", minutes=0, status=S.FILLED, broker_id="b-old")
    old_open = order("old-open", minutes=0, broker_id="b-open")
    new_closed = order("new", minutes=30, status=S.CANCELLED)
    book.add_all([old_closed, old_open, new_closed])

    pruned = book.prune(before=T0 + timedelta(minutes=10))

    assert pruned == ["old"]
    assert "old" not in book
    assert book.by_broker_id("b-old") is None
    assert book.by_broker_id("b-open") is old_open
    assert "new" in book
    assert book.open_orders() == [old_open]


def test_created_since_when_asked_then_only_orders_at_or_after_the_time() -> None:
    book = OrderBook()
    book.add_all([order("a", minutes=0), order("b", minutes=5), order("c", minutes=9)])

    found = book.created_since(T0 + timedelta(minutes=5))

    assert sorted(o.client_order_id for o in found) == ["b", "c"]


def test_order_from_broker_when_adopting_then_every_field_copied() -> None:
    record = BrokerOrder(
        broker_order_id="b-9",
        client_order_id="manual-9",
        symbol="MSFT",
        side=Side.SELL,
        qty=D(7),
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        limit_price=D("201.50"),
        status=S.PARTIALLY_FILLED,
        broker_status="partially_filled",
        filled_qty=D(2),
        filled_avg_price=D("201.75"),
        submitted_at=T0,
        updated_at=T0 + timedelta(minutes=1),
    )

    o = order_from_broker(record)

    assert (o.client_order_id, o.broker_order_id, o.symbol, o.side) == (
        "manual-9",
        "b-9",
        "MSFT",
        Side.SELL,
    )
    assert (o.qty, o.order_type, o.time_in_force, o.limit_price) == (
        D(7),
        OrderType.LIMIT,
        TimeInForce.GTC,
        D("201.50"),
    )
    assert (o.status, o.filled_qty, o.avg_fill_price) == (S.PARTIALLY_FILLED, D(2), D("201.75"))
    assert (o.created_at, o.updated_at) == (T0, T0 + timedelta(minutes=1))
