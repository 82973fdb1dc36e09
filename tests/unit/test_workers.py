"""SymbolBuffer: latest value wins, bursts coalesce and are counted, history never misses a bar."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from engine.domain import Tick
from engine.strategy.base import bar_row
from engine.workers import SymbolBuffer
from tests.unit.engine_stubs import bar, ny

D = Decimal
T0 = ny(10)


def tick(seconds: int, price: str) -> Tick:
    return Tick("AAPL", T0 + timedelta(seconds=seconds), D(price), D(1))


def test_take_when_one_bar_pushed_then_worker_gets_it_with_nothing_dropped() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    first = bar("AAPL", T0, 100)

    buf.push_bar(first)
    update = buf.take()

    assert update.bar == first
    assert update.tick is None
    assert (update.coalesced, buf.dropped, buf.updates) == (0, 0, 1)
    assert not buf.pending


def test_take_when_burst_of_bars_then_latest_seen_and_rest_counted_as_dropped() -> None:
    buf = SymbolBuffer("AAPL", history=2000)
    bars = [bar("AAPL", T0 + timedelta(minutes=i), 100 + i) for i in range(1000)]

    for b in bars:
        buf.push_bar(b)
    update = buf.take()

    assert update.bar == bars[-1]
    assert update.coalesced == 999
    assert buf.dropped == 999
    assert list(buf.bars) == bars  # indicators still see every bar


def test_take_when_called_repeatedly_then_dropped_accumulates_and_idle_take_adds_nothing() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    for i in range(3):
        buf.push_bar(bar("AAPL", T0 + timedelta(minutes=i), 100))
    buf.take()
    for i in range(3, 5):
        buf.push_bar(bar("AAPL", T0 + timedelta(minutes=i), 100))

    second = buf.take()
    idle = buf.take()

    assert second.coalesced == 1
    assert (idle.bar, idle.tick, idle.coalesced) == (None, None, 0)
    assert buf.dropped == 3  # 2 from the first burst, 1 from the second


def test_push_bar_when_bar_is_older_than_history_then_ignored() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    newer = bar("AAPL", T0 + timedelta(minutes=5), 105)
    buf.push_bar(newer)
    buf.take()

    buf.push_bar(bar("AAPL", T0, 100))

    assert not buf.pending
    assert buf.updates == 1
    assert list(buf.bars) == [newer]


def test_push_bar_when_same_minute_arrives_again_then_updated_bar_replaces_it() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    buf.push_bar(bar("AAPL", T0, 100))
    buf.take()
    corrected = bar("AAPL", T0, 101)

    buf.push_bar(corrected)
    update = buf.take()

    assert update.bar == corrected
    assert list(buf.bars) == [corrected]
    assert list(buf.rows) == [bar_row(corrected)]


def test_push_tick_when_older_than_last_tick_then_ignored() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    buf.push_tick(tick(30, "100.50"))
    buf.take()

    buf.push_tick(tick(10, "99"))

    assert not buf.pending
    assert buf.last_tick == tick(30, "100.50")


def test_take_when_only_tick_arrived_then_update_has_tick_and_no_bar() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    buf.push_bar(bar("AAPL", T0, 100))
    buf.take()

    buf.push_tick(tick(70, "100.25"))
    buf.push_tick(tick(75, "100.75"))
    update = buf.take()

    assert update.bar is None
    assert update.tick == tick(75, "100.75")
    assert update.coalesced == 1


def test_take_when_bar_follows_a_consumed_tick_then_old_tick_not_repeated() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    buf.push_tick(tick(10, "100.25"))
    buf.take()
    newer = bar("AAPL", T0 + timedelta(minutes=1), 101)

    buf.push_bar(newer)
    update = buf.take()

    assert (update.bar, update.tick) == (newer, None)
    assert buf.last_tick == tick(10, "100.25")  # still known, just not new


def test_seed_when_warming_up_then_history_filled_without_waking_worker() -> None:
    buf = SymbolBuffer("AAPL", history=3)
    bars = [bar("AAPL", T0 + timedelta(minutes=i), 100 + i) for i in range(5)]

    buf.seed(bars)

    assert not buf.pending
    assert buf.updates == 0
    assert list(buf.bars) == bars[-3:]  # bounded history keeps the newest
    assert buf.recent_rows(2) == [bar_row(bars[3]), bar_row(bars[4])]
    assert buf.recent_rows(10) == [bar_row(b) for b in bars[-3:]]


async def test_next_update_when_bar_arrives_later_then_waiting_worker_wakes() -> None:
    buf = SymbolBuffer("AAPL", history=10)
    waiter = asyncio.get_running_loop().create_task(buf.next_update())
    await asyncio.sleep(0)
    assert not waiter.done()
    latest = bar("AAPL", T0, 100)

    buf.push_bar(latest)
    update = await asyncio.wait_for(waiter, timeout=2.0)

    assert update.bar == latest
