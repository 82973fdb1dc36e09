from __future__ import annotations

import asyncio
import importlib.util
import itertools
import random
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from engine.clock import ReplayClock, trading_day
from engine.domain import Bar, Tick
from engine.feed import csv_bars
from engine.feed.base import MarketDataFeed
from engine.feed.csv_bars import BarDataError, CsvBars, load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH, ReplayFeed

REPO = Path(__file__).resolve().parents[2]
DAY1 = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)  # 09:30 New York
DAY2 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def _bar(symbol: str, ts: datetime, close: str = "100") -> Bar:
    price = Decimal(close)
    return Bar(symbol, ts, price, price, price, price, Decimal(10))


def _session(
    start: datetime, minutes: int, symbols: tuple[str, ...] = ("AAPL", "MSFT")
) -> list[Bar]:
    return [_bar(s, start + timedelta(minutes=m)) for m in range(minutes) for s in symbols]


class RecordingSink:
    def __init__(self, clock: ReplayClock | None = None, feed: ReplayFeed | None = None) -> None:
        self.bars: list[Bar] = []
        self.clock_at: list[datetime] = []
        self.connected_seen: list[bool] = []
        self._clock = clock
        self._feed = feed
        self.first = asyncio.Event()
        self.settled_after: list[int] = []
        self.journaled_after: list[int] = []
        """``settle`` calls asking for the journal too."""
        self.receiving_calls: list[tuple[bool, int]] = []
        """``receiving(more)`` calls, each with the bars seen by then."""

    async def settle(self, *, journaled: bool = True) -> None:
        self.settled_after.append(len(self.bars))
        if journaled:
            self.journaled_after.append(len(self.bars))

    def receiving(self, more: bool) -> None:
        self.receiving_calls.append((more, len(self.bars)))

    def on_bar(self, bar: Bar) -> None:
        self.bars.append(bar)
        if self._clock is not None:
            self.clock_at.append(self._clock.now())
        if self._feed is not None:
            self.connected_seen.append(self._feed.health.connected)
        self.first.set()

    def on_tick(self, tick: Tick) -> None:
        raise AssertionError("a bar replay delivers no ticks")


class FakeSleep:
    """Records requested delays and only yields to the loop."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def test_replay_feed_satisfies_the_feed_protocol() -> None:
    feed: MarketDataFeed = ReplayFeed([], clock=None, speed=0)

    assert feed.health.finished is False


async def test_history_when_two_days_then_first_day_is_history_and_last_is_replayed() -> None:
    bars = _session(DAY1, 5) + _session(DAY2, 3)
    feed = ReplayFeed(bars, clock=None, speed=0, sleep=FakeSleep())
    sink = RecordingSink()

    history = await feed.history("AAPL", DAY2, limit=100)
    await feed.run(sink)

    assert feed.replay_from == DAY2
    assert feed.history_bars == 10
    assert feed.replay_bars == 6
    assert [b.ts for b in history] == [DAY1 + timedelta(minutes=m) for m in range(5)]
    assert {b.symbol for b in history} == {"AAPL"}
    assert [b.ts for b in sink.bars] == [DAY2 + timedelta(minutes=m // 2) for m in range(6)]


async def test_history_when_limit_and_end_given_then_latest_bars_strictly_before_end() -> None:
    feed = ReplayFeed(_session(DAY1, 5) + _session(DAY2, 3), clock=None, speed=0)

    history = await feed.history("msft", DAY1 + timedelta(minutes=4), limit=2)

    assert [(b.symbol, b.ts) for b in history] == [
        ("MSFT", DAY1 + timedelta(minutes=2)),
        ("MSFT", DAY1 + timedelta(minutes=3)),
    ]
    assert await feed.history("MSFT", DAY2, limit=0) == []
    assert await feed.history("TSLA", DAY2, limit=10) == []


async def test_history_when_replay_underway_then_only_delivered_bars_are_served() -> None:
    feed = ReplayFeed(_session(DAY1, 2) + _session(DAY2, 3), clock=None, speed=0)
    far_future = DAY2 + timedelta(days=30)

    before = await feed.history("AAPL", far_future, limit=100)
    await feed.run(RecordingSink())
    after = await feed.history("AAPL", far_future, limit=100)

    assert [b.ts for b in before] == [DAY1, DAY1 + timedelta(minutes=1)]
    assert len(after) == 5
    assert after[-1].ts == DAY2 + timedelta(minutes=2)


async def test_run_when_single_date_then_everything_is_replayed_and_history_empty() -> None:
    feed = ReplayFeed(_session(DAY1, 4), clock=None, speed=0, sleep=FakeSleep())
    sink = RecordingSink()

    await feed.run(sink)

    assert feed.replay_from == DAY1
    assert feed.history_bars == 0
    assert len(sink.bars) == 8
    assert await feed.history("AAPL", DAY1 + timedelta(hours=1), limit=10) == _session(
        DAY1, 4, ("AAPL",)
    )
    assert await feed.history("AAPL", DAY1, limit=10) == []


async def test_run_when_replay_from_given_then_replay_starts_there() -> None:
    start = DAY1 + timedelta(minutes=3)
    feed = ReplayFeed(_session(DAY1, 5), clock=None, speed=0, replay_from=start)
    sink = RecordingSink()

    await feed.run(sink)

    assert feed.history_bars == 6
    after = start + timedelta(minutes=1)
    assert [(b.ts, b.symbol) for b in sink.bars] == [
        (start, "AAPL"),
        (start, "MSFT"),
        (after, "AAPL"),
        (after, "MSFT"),
    ]


async def test_run_when_bars_are_shuffled_then_delivered_in_ts_symbol_order() -> None:
    bars = _session(DAY1, 20, ("SPY", "AAPL", "MSFT"))
    shuffled = bars[:]
    random.Random(7).shuffle(shuffled)
    feed = ReplayFeed(shuffled, clock=None, speed=0, sleep=FakeSleep())
    sink = RecordingSink()

    await feed.run(sink)

    assert [(b.ts, b.symbol) for b in sink.bars] == sorted((b.ts, b.symbol) for b in bars)


async def test_run_then_clock_is_set_to_each_bar_close_before_the_sink_sees_it() -> None:
    clock = ReplayClock(DAY1 - timedelta(hours=1))
    feed = ReplayFeed(_session(DAY1, 3), clock=clock, speed=0, sleep=FakeSleep())
    sink = RecordingSink(clock=clock)

    await feed.run(sink)

    closes = [DAY1 + timedelta(minutes=m) for m in (1, 1, 2, 2, 3, 3)]
    assert sink.clock_at == closes
    assert clock.now() == DAY1 + timedelta(minutes=3)


async def test_run_when_speed_zero_then_only_zero_delays_are_requested() -> None:
    sleep = FakeSleep()
    feed = ReplayFeed(_session(DAY1, 4), clock=None, speed=0, sleep=sleep)

    await feed.run(RecordingSink())

    assert sleep.delays == [0.0, 0.0, 0.0, 0.0]  # one yield per timestamp group


async def test_run_when_speed_zero_then_sink_settles_after_every_group() -> None:
    feed = ReplayFeed(_session(DAY1, 3), clock=None, speed=0, sleep=FakeSleep())
    sink = RecordingSink()

    await feed.run(sink)

    # two symbols per timestamp: the engine settles after each pair
    assert sink.settled_after == [2, 4, 6]
    # only the last waits for the journal too: the replay ends with its fills on disk
    assert sink.journaled_after == [6]


async def test_run_when_paced_then_sink_is_never_asked_to_settle() -> None:
    feed = ReplayFeed(_session(DAY1, 3), clock=None, speed=60, sleep=FakeSleep())
    sink = RecordingSink()

    await feed.run(sink)

    assert sink.settled_after == []


async def test_run_when_speed_zero_with_real_sleep_then_other_tasks_run_in_between() -> None:
    feed = ReplayFeed(_session(DAY1, 50), clock=None, speed=0)
    ticks = 0
    stop = asyncio.Event()

    async def other() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    other_task = asyncio.create_task(other())
    await asyncio.wait_for(feed.run(RecordingSink()), timeout=5)
    stop.set()
    await other_task

    assert feed.health.finished
    assert ticks >= 40


async def test_run_when_speed_multiplier_then_waits_gap_divided_by_speed() -> None:
    sleep = FakeSleep()
    bars = [
        _bar("AAPL", DAY1),
        _bar("MSFT", DAY1),
        _bar("AAPL", DAY1 + timedelta(minutes=1)),
        _bar("AAPL", DAY1 + timedelta(minutes=4)),  # three-minute gap (no trades)
        _bar("AAPL", DAY1 + timedelta(hours=3)),  # a halt: longer than max_gap
    ]
    feed = ReplayFeed(bars, clock=None, speed=60, sleep=sleep, replay_from=DAY1)

    await feed.run(RecordingSink())

    assert sleep.delays == [1.0, 3.0, 5.0, 0.0]


async def test_run_when_realtime_then_waits_full_gap() -> None:
    sleep = FakeSleep()
    feed = ReplayFeed(_session(DAY1, 3, ("SPY",)), clock=None, speed=1, sleep=sleep)

    await feed.run(RecordingSink())

    assert sleep.delays == [60.0, 60.0, 0.0]


async def test_run_then_health_counts_messages_and_finishes() -> None:
    clock = ReplayClock(DAY1)
    feed = ReplayFeed(_session(DAY1, 3), clock=clock, speed=0, sleep=FakeSleep())
    sink = RecordingSink(feed=feed)
    assert feed.health.connected is False

    await feed.run(sink)

    health = feed.health
    assert sink.connected_seen == [True] * 6
    assert health.connected is False
    assert health.finished is True
    assert health.messages == 6
    assert health.malformed == 0
    assert health.last_message_at == DAY1 + timedelta(minutes=2)
    assert health.last_message_mono is not None
    assert "finished" in health.detail


async def test_run_when_symbols_given_then_other_symbols_are_dropped() -> None:
    bars = _session(DAY1, 3, ("AAPL", "MSFT", "SPY")) + _session(DAY2, 2, ("AAPL", "MSFT", "SPY"))
    feed = ReplayFeed(bars, clock=None, speed=0, symbols=["spy", "AAPL"], sleep=FakeSleep())
    sink = RecordingSink()

    await feed.run(sink)

    assert feed.symbols == ("AAPL", "SPY")
    assert [b.symbol for b in sink.bars] == ["AAPL", "SPY", "AAPL", "SPY"]
    assert await feed.history("MSFT", DAY2, limit=10) == []
    assert len(await feed.history("SPY", DAY2, limit=10)) == 3


async def test_run_when_cancelled_then_stops_cleanly_and_a_new_run_resumes() -> None:
    gate = asyncio.Event()
    blocking = True

    async def sleep(delay: float) -> None:
        if blocking:
            await gate.wait()  # never set: only cancellation gets out

    feed = ReplayFeed(_session(DAY1, 3, ("AAPL",)), clock=None, speed=1, sleep=sleep)
    sink = RecordingSink()
    task = asyncio.create_task(feed.run(sink))
    await asyncio.wait_for(sink.first.wait(), timeout=5)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(sink.bars) == 1
    assert feed.health.connected is False
    assert feed.health.finished is False
    assert feed.health.messages == 1
    assert feed.health.detail == "replay stopped"

    blocking = False
    await feed.run(sink)

    assert [b.ts for b in sink.bars] == [DAY1 + timedelta(minutes=m) for m in range(3)]
    assert feed.health.finished is True


async def test_run_when_already_running_then_second_run_is_refused() -> None:
    gate = asyncio.Event()

    async def sleep(delay: float) -> None:
        await gate.wait()

    feed = ReplayFeed(_session(DAY1, 2, ("AAPL",)), clock=None, speed=0, sleep=sleep)
    sink = RecordingSink()
    task = asyncio.create_task(feed.run(sink))
    await asyncio.wait_for(sink.first.wait(), timeout=5)

    with pytest.raises(RuntimeError, match="already running"):
        await feed.run(sink)

    gate.set()
    await asyncio.wait_for(task, timeout=5)
    assert feed.health.finished is True


async def test_run_when_no_bars_then_finishes_immediately() -> None:
    feed = ReplayFeed([], clock=None, speed=0)

    await feed.run(RecordingSink())

    assert feed.health.finished is True
    assert feed.health.messages == 0


class Ticker:
    """Another task on the loop: counts its turns, and the sink notes the count per bar."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)


class TickingSink(RecordingSink):
    def __init__(self, ticker: Ticker) -> None:
        super().__init__()
        self.ticker = ticker
        self.ticks_at: list[int] = []

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        self.ticks_at.append(self.ticker.ticks)


SHUFFLED = [
    _bar(s, DAY1 + timedelta(minutes=m))
    for m, symbols in enumerate([("MSFT", "AAPL", "SPY"), ("SPY", "AAPL", "MSFT")] * 2)
    for s in symbols
]


async def test_run_when_slice_used_up_then_each_minute_comes_in_parts_in_the_same_order() -> None:
    whole = RecordingSink()
    await ReplayFeed(SHUFFLED, speed=0, slice_s=60.0).run(whole)

    async with Ticker() as ticker:
        parts = TickingSink(ticker)
        await ReplayFeed(SHUFFLED, speed=0, slice_s=0.0).run(parts)

    assert parts.bars == whole.bars
    assert [(b.ts.minute, b.symbol) for b in parts.bars[:3]] == [
        (30, "AAPL"),
        (30, "MSFT"),
        (30, "SPY"),
    ]
    # Every bar its own part, the loop running between two of them.
    assert all(later > earlier for earlier, later in itertools.pairwise(parts.ticks_at))
    assert parts.receiving_calls == [
        call for m in range(4) for call in ((True, 3 * m + 1), (False, 3 * m + 3))
    ]
    assert parts.settled_after == whole.settled_after == [3, 6, 9, 12]
    assert whole.receiving_calls == []


async def test_run_when_paced_and_a_minute_comes_in_parts_then_the_sink_is_told_when_it_is_in() -> (
    None
):
    sink = RecordingSink()

    await ReplayFeed(SHUFFLED, speed=60, slice_s=0.0, sleep=FakeSleep()).run(sink)

    assert sink.receiving_calls == [
        call for m in range(4) for call in ((True, 3 * m + 1), (False, 3 * m + 3))
    ]
    assert sink.settled_after == []


async def test_run_when_slice_not_used_up_then_a_minute_is_one_call() -> None:
    async with Ticker() as ticker:
        sink = TickingSink(ticker)
        await ReplayFeed(SHUFFLED, speed=0, slice_s=60.0).run(sink)

    assert sink.receiving_calls == []
    for minute in range(4):
        assert len(set(sink.ticks_at[3 * minute : 3 * minute + 3])) == 1


async def test_run_when_cancelled_inside_a_minute_then_the_next_run_delivers_its_rest() -> None:
    feed = ReplayFeed(SHUFFLED, speed=0, slice_s=0.0)
    task: asyncio.Task[None] | None = None

    class Stopping(RecordingSink):
        def on_bar(self, bar: Bar) -> None:
            super().on_bar(bar)
            if len(self.bars) == 5:  # the second bar of the second minute
                assert task is not None
                task.cancel()

    sink = Stopping()
    task = asyncio.create_task(feed.run(sink))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)

    assert len(sink.bars) == 5
    assert feed.health.messages == 5
    assert sink.receiving_calls[-1] == (False, 5)  # released: snapshots are not held for good
    await feed.run(sink)

    assert sink.bars == sorted(SHUFFLED, key=lambda b: (b.ts, b.symbol))
    assert feed.health.messages == 12
    assert feed.health.finished


async def test_run_when_source_skips_earlier_days_then_the_loop_runs_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_bars, "SKIP_BLOCK", 10)
    path = tmp_path / "bars.csv"
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    lines += [f"{(DAY1 + timedelta(minutes=m)).isoformat()},AAPL,1,1,1,1,1" for m in range(50)]
    lines += [f"{DAY2.isoformat()},AAPL,1,1,1,1,1"]
    path.write_text("\r".join(lines) + "\r", newline="")  # read past, not sought
    feed = ReplayFeed(CsvBars(path, keep=5), speed=0, history_limit=5, slice_s=0.0)

    async with Ticker() as ticker:
        before = ticker.ticks
        sink = TickingSink(ticker)
        await feed.run(sink)

    assert [b.ts for b in sink.bars] == [DAY2]
    assert sink.ticks_at[0] - before >= 5  # 50 lines skipped, 10 at a time


def test_replay_feed_when_speed_negative_then_value_error() -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplayFeed([], clock=None, speed=-1)


# --- the bundled sample ---------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_sample_data", REPO / "scripts" / "make_sample_data.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module executes.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_sample_when_regenerated_then_bytes_equal_the_committed_file(tmp_path: Path) -> None:
    out = tmp_path / "sample_bars.csv"

    _generator().main(["--out", str(out)])

    assert out.read_bytes() == SAMPLE_BARS_PATH.read_bytes()


def test_sample_then_two_sessions_of_390_minute_bars_for_three_symbols() -> None:
    bars = load_bars_csv(SAMPLE_BARS_PATH)

    per_day_symbol = Counter((trading_day(b.ts), b.symbol) for b in bars)
    assert len(bars) == 2 * 390 * 3
    assert set(per_day_symbol.values()) == {390}
    assert {day.isoformat() for day, _ in per_day_symbol} == {"2026-11-19", "2026-11-20"}
    first = min(b.ts for b in bars)
    last = max(b.ts for b in bars)
    assert first == DAY1
    assert last == DAY2 + timedelta(minutes=389)  # 15:59 New York


@pytest.mark.parametrize(
    ("symbol", "low", "high"), [("AAPL", 200, 260), ("MSFT", 380, 460), ("SPY", 550, 630)]
)
def test_sample_then_prices_are_realistic_per_symbol(symbol: str, low: int, high: int) -> None:
    bars = [b for b in load_bars_csv(SAMPLE_BARS_PATH) if b.symbol == symbol]

    assert all(low < b.low <= b.high < high for b in bars)
    assert all(b.volume > 0 for b in bars)


async def test_sample_feed_then_first_day_is_history_and_second_is_replayed() -> None:
    clock = ReplayClock(DAY1)
    feed = ReplayFeed(load_bars_csv(SAMPLE_BARS_PATH), clock=clock, speed=0)
    sink = RecordingSink()

    await feed.run(sink)

    assert feed.replay_from == DAY2
    assert feed.history_bars == 1170
    assert len(sink.bars) == 1170
    assert len(await feed.history("AAPL", DAY2, limit=500)) == 390
    assert clock.now() == DAY2 + timedelta(minutes=390)  # 16:00 New York


async def test_sample_when_streamed_from_the_file_then_same_bars_and_history_as_in_memory() -> None:
    streamed = ReplayFeed(CsvBars(SAMPLE_BARS_PATH), speed=0, history_limit=31)
    held = ReplayFeed(load_bars_csv(SAMPLE_BARS_PATH), speed=0)
    streamed_sink, held_sink = RecordingSink(), RecordingSink()

    before = await streamed.history("AAPL", DAY2, limit=31)
    await streamed.run(streamed_sink)
    await held.run(held_sink)

    assert streamed.replay_from == held.replay_from == DAY2
    assert (streamed.history_bars, streamed.replay_bars) == (held.history_bars, held.replay_bars)
    assert streamed_sink.bars == held_sink.bars
    assert before == (await held.history("AAPL", DAY2, limit=500))[-31:]
    # Memory flat in the length of the file: it keeps what the strategies asked for.
    assert len(await streamed.history("AAPL", DAY2 + timedelta(days=1), limit=1000)) == 31


async def test_run_when_streamed_and_cancelled_then_a_new_run_resumes_after_the_last_group(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bars.csv"
    lines = ["timestamp,symbol,open,high,low,close,volume"] + [
        f"{(DAY1 + timedelta(minutes=m)).isoformat()},{s},1,1,1,1,1"
        for m in range(4)
        for s in ("AAPL", "MSFT")
    ]
    path.write_text("\n".join(lines) + "\n")
    gate = asyncio.Event()

    async def sleep(delay: float) -> None:
        await gate.wait()

    feed = ReplayFeed(CsvBars(path), speed=1, sleep=sleep)
    sink = RecordingSink()
    task = asyncio.create_task(feed.run(sink))
    await asyncio.wait_for(sink.first.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()

    await feed.run(sink)

    assert [(b.ts, b.symbol) for b in sink.bars] == [
        (DAY1 + timedelta(minutes=m), s) for m in range(4) for s in ("AAPL", "MSFT")
    ]


async def test_run_when_streamed_minutes_are_not_in_symbol_order_then_each_is_sorted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bars.csv"
    order = [("MSFT", "AAPL", "SPY"), ("AAPL", "MSFT", "SPY"), ("SPY", "MSFT", "AAPL")]
    lines = ["timestamp,symbol,open,high,low,close,volume"] + [
        f"{(DAY1 + timedelta(minutes=m)).isoformat()},{s},1,1,1,1,1"
        for m, symbols in enumerate(order)
        for s in symbols
    ]
    path.write_text("\n".join(lines) + "\n")
    streamed, held = ReplayFeed(CsvBars(path), speed=0), ReplayFeed(load_bars_csv(path), speed=0)
    streamed_sink, held_sink = RecordingSink(), RecordingSink()

    await streamed.run(streamed_sink)
    await held.run(held_sink)

    expected = [(DAY1 + timedelta(minutes=m), s) for m in range(3) for s in ("AAPL", "MSFT", "SPY")]
    assert [(b.ts, b.symbol) for b in streamed_sink.bars] == expected
    assert streamed_sink.bars == held_sink.bars
    assert streamed_sink.settled_after == [3, 6, 9]


async def test_history_when_scan_kept_it_then_file_not_read_again_and_same_replay(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bars.csv"
    path.write_bytes(SAMPLE_BARS_PATH.read_bytes())
    kept_source, unkept_source = CsvBars(path, keep=31), CsvBars(path)
    plain = ReplayFeed(CsvBars(SAMPLE_BARS_PATH), speed=0, history_limit=31)
    # Spoil the first day after the scan, keeping every line's length: a pass from the start
    # of the file would fail on it.
    lines = path.read_text().splitlines()
    spoiled = [
        line.replace(",", ";", 1) if i and "2026-11-19" in line else line
        for i, line in enumerate(lines)
    ]
    path.write_text("\n".join(spoiled) + "\n")

    with pytest.raises(BarDataError, match="line 2: "):
        ReplayFeed(unkept_source, speed=0, history_limit=31)
    kept = ReplayFeed(kept_source, speed=0, history_limit=31)
    kept_sink, plain_sink = RecordingSink(), RecordingSink()
    await kept.run(kept_sink)
    await plain.run(plain_sink)

    assert (kept.history_bars, kept.replay_bars) == (plain.history_bars, plain.replay_bars)
    assert kept.history_bars == 3 * 390
    assert kept_sink.bars == plain_sink.bars
    for symbol in kept.symbols:
        assert await kept.history(symbol, DAY2, 31) == await plain.history(symbol, DAY2, 31)


async def test_history_when_replay_resumes_mid_day_then_same_as_a_source_that_kept_none() -> None:
    resume = DAY2 + timedelta(minutes=100)
    kept = ReplayFeed(CsvBars(SAMPLE_BARS_PATH, keep=31), replay_from=resume, history_limit=31)
    plain = ReplayFeed(CsvBars(SAMPLE_BARS_PATH), replay_from=resume, history_limit=31)
    kept_sink, plain_sink = RecordingSink(), RecordingSink()

    before = await kept.history("AAPL", resume, 31)
    assert before == await plain.history("AAPL", resume, 31)
    assert [b.ts for b in before][-1] == resume - timedelta(minutes=1)
    await kept.run(kept_sink)
    await plain.run(plain_sink)

    assert (kept.history_bars, kept.replay_bars) == (plain.history_bars, plain.replay_bars)
    assert kept.history_bars == 3 * 490
    assert kept_sink.bars == plain_sink.bars


async def test_history_when_two_feeds_share_a_source_that_kept_it_then_both_have_it() -> None:
    # The kept bars are handed over once (memory); the second feed reads them from the file.
    source = CsvBars(SAMPLE_BARS_PATH, keep=31)
    plain = ReplayFeed(CsvBars(SAMPLE_BARS_PATH), history_limit=31)

    first = ReplayFeed(source, history_limit=31)
    second = ReplayFeed(source, history_limit=31)

    for feed in (first, second):
        assert feed.history_bars == plain.history_bars == 3 * 390
        for symbol in plain.symbols:
            assert await feed.history(symbol, DAY2, 31) == await plain.history(symbol, DAY2, 31)
