"""MarketDataQueue: every bar kept, ticks coalesce to the newest, symbols served in turn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain import Bar, Tick
from engine.workers import MarketDataQueue

D = Decimal
T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def bar(symbol: str, minute: int, close: int = 100) -> Bar:
    price = D(close)
    return Bar(symbol, T0 + timedelta(minutes=minute), price, price, price, price, D(100))


def tick(seconds: int, price: str, symbol: str = "AAPL") -> Tick:
    return Tick(symbol, T0 + timedelta(seconds=seconds), D(price), D(1))


def test_pop_when_burst_of_bars_then_all_kept_in_order_and_folds_counted() -> None:
    queue = MarketDataQueue()
    bars = [bar("AAPL", i, 100 + i) for i in range(1000)]

    for b in bars:
        queue.push_bar(b)
    update = queue.pop()

    assert update is not None
    assert update.bars == bars  # a strategy sees every bar
    assert update.coalesced == 999
    assert (queue.dropped, queue.updates) == (999, 1000)
    assert queue.pop() is None
    assert not queue.pending


def test_pop_when_ticks_arrive_then_only_the_newest_is_handed_over() -> None:
    queue = MarketDataQueue()
    queue.push_tick(tick(10, "100.25"))
    queue.push_tick(tick(15, "100.75"))
    queue.push_tick(tick(12, "99"))  # older than the last: ignored

    update = queue.pop()

    assert update is not None
    assert (update.bars, update.tick, update.coalesced) == ([], tick(15, "100.75"), 1)
    assert queue.last_tick("AAPL") == tick(15, "100.75")
    assert queue.updates == 2


def test_pop_when_several_symbols_then_served_in_the_order_they_first_got_data() -> None:
    queue = MarketDataQueue()
    queue.push_bar(bar("MSFT", 0))
    queue.push_bar(bar("AAPL", 0))
    queue.push_tick(tick(70, "101", "MSFT"))

    order = [u.symbol for u in iter(queue.pop, None)]

    assert order == ["MSFT", "AAPL"]


def test_pop_when_symbol_gets_data_after_being_served_then_it_queues_again_at_the_end() -> None:
    queue = MarketDataQueue()
    queue.push_bar(bar("AAPL", 0))
    queue.push_bar(bar("MSFT", 0))
    first = queue.pop()
    queue.push_bar(bar("AAPL", 1))

    rest = [u.symbol for u in iter(queue.pop, None)]

    assert first is not None
    assert first.symbol == "AAPL"
    assert rest == ["MSFT", "AAPL"]


async def test_wait_when_data_arrives_later_then_waiting_dispatcher_wakes() -> None:
    queue = MarketDataQueue()
    waiter = asyncio.get_running_loop().create_task(queue.wait())
    await asyncio.sleep(0)
    assert not waiter.done()

    queue.push_bar(bar("AAPL", 0))
    await asyncio.wait_for(waiter, timeout=2.0)

    assert queue.pending


async def test_wait_when_woken_then_emptied_before_it_runs_then_keeps_waiting() -> None:
    queue = MarketDataQueue()
    waiter = asyncio.get_running_loop().create_task(queue.wait())
    await asyncio.sleep(0)
    queue.push_bar(bar("AAPL", 0))
    queue.pop()  # someone else drained it first
    await asyncio.sleep(0)
    await asyncio.sleep(0)

    assert not waiter.done()
    queue.push_bar(bar("AAPL", 1))
    await asyncio.wait_for(waiter, timeout=2.0)
