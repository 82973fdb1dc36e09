from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from config.settings import SimSettings
from engine.broker.port import Broker, StreamGap, TradeUpdate
from engine.broker.sim import STATUS_MAP, SimBroker, to_broker_order
from engine.calendar import MarketCalendar
from engine.clock import NEW_YORK, TestClock
from engine.domain import (
    Bar,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Tick,
    TimeInForce,
)
from engine.errors import DuplicateClientOrderId
from engine.sim.exchange import SimExchange
from engine.sim.models import CommissionModel, OrderRecord, SlippageModel

D = Decimal
OPEN_TS = datetime(2026, 3, 10, 10, 0, tzinfo=NEW_YORK).astimezone(UTC)


def make_exchange(clock: TestClock, *, max_fill: str = "0") -> SimExchange:
    return SimExchange(
        None,
        starting_cash=D(100_000),
        slippage=SlippageModel(D(0)),
        commission=CommissionModel(per_share=D("0.01"), minimum=D(1)),
        max_fill_qty=D(max_fill),
        calendar=MarketCalendar(),
        clock=clock,
    )


def request(cid: str, qty: str = "10", side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol="AAPL", side=side, qty=D(qty))


async def next_updates(broker: SimBroker, count: int) -> list[TradeUpdate]:
    """Read ``count`` updates, failing after a deadline instead of hanging."""
    found: list[TradeUpdate] = []

    async def read() -> None:
        async for item in broker.trade_updates():
            assert not isinstance(item, StreamGap)
            found.append(item)
            if len(found) == count:
                return

    await asyncio.wait_for(read(), timeout=2.0)
    return found


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(OPEN_TS)


@pytest.fixture
def broker(clock: TestClock) -> SimBroker:
    return SimBroker(make_exchange(clock))


def test_sim_broker_when_checked_against_port_then_conforms(broker: SimBroker) -> None:
    assert isinstance(broker, Broker)
    assert broker.name == "sim"


@pytest.mark.parametrize(
    ("venue", "ours"),
    [
        ("new", OrderStatus.SUBMITTED),
        ("accepted", OrderStatus.SUBMITTED),
        ("partially_filled", OrderStatus.PARTIALLY_FILLED),
        ("filled", OrderStatus.FILLED),
        ("canceled", OrderStatus.CANCELLED),
        ("expired", OrderStatus.EXPIRED),
        ("rejected", OrderStatus.REJECTED),
        ("pending_cancel", OrderStatus.CANCEL_PENDING),
    ],
)
def test_to_broker_order_when_venue_status_then_mapped(venue: str, ours: OrderStatus) -> None:
    record = OrderRecord(
        id="o-1",
        client_order_id="c-1",
        symbol="AAPL",
        side=Side.BUY,
        qty=D(3),
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        limit_price=D("9.5"),
        status=venue,
        created_at=OPEN_TS,
        submitted_at=OPEN_TS,
        updated_at=OPEN_TS,
    )

    order = to_broker_order(record)

    assert (order.status, order.broker_status) == (ours, venue)
    assert (order.broker_order_id, order.client_order_id) == ("o-1", "c-1")
    assert (order.order_type, order.time_in_force, order.limit_price) == (
        OrderType.LIMIT,
        TimeInForce.GTC,
        D("9.5"),
    )
    assert set(STATUS_MAP) >= {venue}


def test_to_broker_order_when_status_unknown_then_value_error() -> None:
    record = OrderRecord(
        "o", "c", "AAPL", Side.BUY, D(1), OrderType.MARKET, TimeInForce.DAY, None,
        "held", OPEN_TS, OPEN_TS, OPEN_TS,
    )  # fmt: skip

    with pytest.raises(ValueError, match="unknown status"):
        to_broker_order(record)


async def test_submit_order_when_price_known_then_filled_broker_order(broker: SimBroker) -> None:
    broker.on_tick(Tick("AAPL", OPEN_TS, D("100.00"), D(50)))

    order = await broker.submit_order(request("c-1"))

    assert (order.status, order.broker_status) == (OrderStatus.FILLED, "filled")
    assert (order.filled_qty, order.filled_avg_price) == (D(10), D(100))
    assert order.submitted_at == OPEN_TS


async def test_submit_order_when_client_id_reused_then_duplicate_raised(broker: SimBroker) -> None:
    await broker.submit_order(request("c-1"))

    with pytest.raises(DuplicateClientOrderId):
        await broker.submit_order(request("c-1"))


async def test_trade_updates_when_partial_fills_then_converted_updates_in_order(
    clock: TestClock,
) -> None:
    broker = SimBroker(make_exchange(clock, max_fill="6"))
    broker.on_bar(Bar("AAPL", OPEN_TS, D(10), D(10), D(10), D(10), D(100)))

    submitted = await broker.submit_order(request("c-1"))
    broker.on_bar(Bar("AAPL", OPEN_TS, D(11), D(11), D(11), D(11), D(100)))
    updates = await next_updates(broker, 3)

    assert submitted.status is OrderStatus.PARTIALLY_FILLED
    assert [(u.event, u.order.status) for u in updates] == [
        ("new", OrderStatus.SUBMITTED),
        ("partial_fill", OrderStatus.PARTIALLY_FILLED),
        ("fill", OrderStatus.FILLED),
    ]
    fills = [u.to_fill() for u in updates]
    assert fills[0] is None
    assert [(f.qty, f.price, f.commission) for f in fills if f is not None] == [
        (D(6), D(10), D("1.00")),
        (D(4), D(11), D("0.00")),
    ]
    assert [u.position_qty for u in updates[1:]] == [D(6), D(10)]
    history = await broker.get_fills_since(OPEN_TS)
    assert [f.execution_id for f in history] == [u.execution_id for u in updates[1:]]
    assert all(f.broker_order_id == submitted.broker_order_id for f in history)


async def test_trade_updates_when_closed_then_iterator_ends(broker: SimBroker) -> None:
    await broker.connect()
    await broker.submit_order(request("c-1"))
    await broker.close()
    await broker.close()  # idempotent

    seen = [u async for u in broker.trade_updates()]

    assert [u.event for u in seen if isinstance(u, TradeUpdate)] == ["new"]


async def test_calls_when_latency_set_then_each_call_waits_that_long(clock: TestClock) -> None:
    sleep = RecordingSleep()
    broker = SimBroker(make_exchange(clock), latency_ms=25, sleep=sleep)

    await broker.submit_order(request("c-1"))
    await broker.get_positions()
    await broker.get_account()

    assert sleep.calls == [0.025, 0.025, 0.025]


async def test_calls_when_no_latency_then_never_sleep(clock: TestClock) -> None:
    sleep = RecordingSleep()
    broker = SimBroker(make_exchange(clock), sleep=sleep)

    await broker.get_account()

    assert sleep.calls == []


async def test_get_account_when_position_held_then_decimal_money(broker: SimBroker) -> None:
    broker.on_tick(Tick("AAPL", OPEN_TS, D("100.00"), D(1)))
    await broker.submit_order(request("c-1", qty="10"))
    broker.on_tick(Tick("AAPL", OPEN_TS, D("101.50"), D(1)))

    account = await broker.get_account()

    assert account.cash == D("98999.00")  # 100000 - 1000 - 1.00 minimum commission
    assert account.equity == D("100014.00")  # 98999 + 10 * 101.50
    assert account.buying_power == D("199013.00")  # 2 * 100014 - 1015
    assert account.last_equity == D("100000.00")
    for value in (account.cash, account.equity, account.buying_power, account.last_equity):
        assert isinstance(value, Decimal)


async def test_close_all_positions_when_long_then_ok_result_and_flat(broker: SimBroker) -> None:
    broker.on_tick(Tick("AAPL", OPEN_TS, D("100"), D(1)))
    await broker.submit_order(request("c-1"))
    resting = await broker.submit_order(
        OrderRequest("c-2", "AAPL", Side.BUY, D(1), OrderType.LIMIT, D(50), TimeInForce.GTC)
    )

    results = await broker.close_all_positions()

    [result] = results
    assert (result.symbol, result.ok, result.status) == ("AAPL", True, 200)
    assert result.order is not None
    assert result.order.status is OrderStatus.FILLED
    assert await broker.get_positions() == []
    assert await broker.get_open_orders() == []
    cancelled = await broker.get_order_by_client_id("c-2")
    assert cancelled is not None
    assert cancelled.broker_order_id == resting.broker_order_id
    assert cancelled.status is OrderStatus.CANCELLED


async def test_cancel_all_orders_when_two_open_then_returns_two(broker: SimBroker) -> None:
    for cid in ("c-1", "c-2"):
        await broker.submit_order(
            OrderRequest(cid, "AAPL", Side.BUY, D(1), OrderType.LIMIT, D(50), TimeInForce.GTC)
        )

    assert await broker.cancel_all_orders() == 2
    assert [o.status for o in await broker.get_orders_since(OPEN_TS)] == [
        OrderStatus.CANCELLED,
        OrderStatus.CANCELLED,
    ]


async def test_get_clock_when_session_open_then_from_calendar_at_exchange_now(
    broker: SimBroker,
) -> None:
    clock = await broker.get_clock()

    assert clock.is_open is True
    assert clock.ts == OPEN_TS
    assert clock.next_close == datetime(2026, 3, 10, 20, 0, tzinfo=UTC)


async def test_get_calendar_when_week_with_holiday_then_four_sessions(broker: SimBroker) -> None:
    sessions = await broker.get_calendar(date(2026, 3, 30), date(2026, 4, 5))

    assert [s.day.day for s in sessions] == [30, 31, 1, 2]


def test_create_when_settings_given_then_exchange_uses_them(tmp_path: Path) -> None:
    settings = SimSettings(
        starting_cash=D(5000),
        slippage_bps=D(10),
        commission_per_share=D(0),
        commission_min=D(0),
        max_fill_qty=D(0),
        latency_ms=0.0,
    )
    clock = TestClock(OPEN_TS)

    broker = SimBroker.create(tmp_path / "state.json", settings, clock)
    broker.on_tick(Tick("AAPL", OPEN_TS, D("100.00"), D(1)))
    order = broker.exchange.submit("AAPL", Side.BUY, D(10))

    assert order.filled_avg_price == D("100.10")
    assert broker.exchange.account().cash == D("3999.00")
    assert (tmp_path / "state.json").exists()


def persisted_exchange(clock: TestClock, path: Path) -> SimExchange:
    return SimExchange(
        path,
        starting_cash=D(100_000),
        slippage=SlippageModel(D(0)),
        commission=CommissionModel(per_share=D("0.01"), minimum=D(1)),
        calendar=MarketCalendar(),
        clock=clock,
    )


def saved_client_ids(path: Path) -> set[str]:
    return {
        o["client_order_id"]
        for line in path.read_text().splitlines()
        for o in json.loads(line)["orders"]
    }


async def test_submit_order_when_a_burst_in_one_turn_then_one_save_and_each_reply_after_it(
    clock: TestClock, tmp_path: Path
) -> None:
    path = tmp_path / "sim.jsonl"
    broker = SimBroker(persisted_exchange(clock, path))
    broker.on_tick(Tick("AAPL", OPEN_TS, D("100.00"), D(50)))
    broker.exchange.flush()
    lines_before = len(path.read_text().splitlines())
    on_disk_at_reply: dict[str, bool] = {}

    async def place(cid: str) -> None:
        await broker.submit_order(request(cid))
        on_disk_at_reply[cid] = cid in saved_client_ids(path)

    await asyncio.gather(*(place(f"c-{i}") for i in range(4)))

    assert len(path.read_text().splitlines()) == lines_before + 1  # one save, not four
    assert on_disk_at_reply == {f"c-{i}": True for i in range(4)}
    updates = await next_updates(broker, 8)
    assert [u.event for u in updates] == ["new", "fill"] * 4


async def test_submit_order_when_replies_then_each_before_its_trade_updates(
    broker: SimBroker,
) -> None:
    broker.on_tick(Tick("AAPL", OPEN_TS, D("100.00"), D(50)))
    seen: list[str] = []

    async def place(cid: str) -> None:
        await broker.submit_order(request(cid))
        seen.append(f"reply {cid}")

    async def listen() -> None:
        async for item in broker.trade_updates():
            assert isinstance(item, TradeUpdate)
            seen.append(f"{item.event} {item.order.client_order_id}")
            if len(seen) == 6:
                return

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)  # the listener waits on the stream, as the engine's consumer does
    await asyncio.gather(place("c-1"), place("c-2"))
    await asyncio.wait_for(listener, timeout=2.0)

    assert seen[:2] == ["reply c-1", "reply c-2"]
    assert sorted(seen[2:]) == ["fill c-1", "fill c-2", "new c-1", "new c-2"]


async def test_submit_order_when_the_shared_save_fails_then_every_caller_raises_nothing_reported(
    clock: TestClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sim.jsonl"
    broker = SimBroker(persisted_exchange(clock, path))
    broker.on_tick(Tick("AAPL", OPEN_TS, D("100.00"), D(50)))
    broker.exchange.flush()
    store = broker.exchange._ledger._store
    assert store is not None
    real_append = store.append

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "append", disk_full)

    results = await asyncio.gather(
        broker.submit_order(request("c-1")), broker.submit_order(request("c-2")),
        return_exceptions=True,
    )  # fmt: skip

    assert [type(r) for r in results] == [OSError, OSError]
    assert broker._updates.empty()
    assert saved_client_ids(path) == set()
    monkeypatch.setattr(store, "append", real_append)
    await broker.get_positions()  # the next call saves what is pending, then reports it
    assert saved_client_ids(path) == {"c-1", "c-2"}
    assert [u.event for u in await next_updates(broker, 4)] == ["new", "fill"] * 2
