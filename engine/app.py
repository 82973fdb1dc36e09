"""Composition root: settings in, a wired engine and command service out.

Each component receives only its own settings section. The transports (console, Discord)
take an ``EngineApp`` and own its lifetime: ``await app.start()`` ... ``await app.stop()``.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from config import Settings
from engine.backtest.history import cached_replay
from engine.broker.port import Broker
from engine.broker.sim import SimBroker
from engine.bus import EventBus
from engine.clock import Clock, ReplayClock, SystemClock
from engine.commands import CommandService
from engine.engine import TradingEngine
from engine.errors import DomainError, JournalOpenError
from engine.events import ConnectionChanged
from engine.feed.base import MarketDataFeed, PriceListener
from engine.feed.csv_bars import CsvBars
from engine.feed.replay import SAMPLE_BARS_PATH, BarSource, ReplayFeed
from engine.health import HEALTH_FILE
from engine.store.journal import Journal
from engine.store.schema import SchemaError
from engine.strategy import StrategyHost, load_strategies
from engine.watchdog import WatchdogLimits

log = logging.getLogger(__name__)

SIM_STATE_FILE = "sim_account.jsonl"
THREAD_HANDOFF_S = 0.0002
"""The interpreter's switch interval while the engine runs (Python's default: 5 ms). Its I/O
runs on threads (alpaca-py's requests, SQLite's worker), and each step of a request or a
transaction needs the GIL back; while the loop is busy (a flatten's 6,000 trade updates)
a thread waits a whole interval for it each time: a flatten's last durable writes took
0.4 s behind the burst at 5 ms, 0.2 s at 0.2 ms (tests/bench/flatten.py)."""


@dataclass
class EngineApp:
    settings: Settings
    clock: Clock
    bus: EventBus
    journal: Journal
    broker: Broker
    feed: MarketDataFeed
    engine: TradingEngine
    commands: CommandService
    settle_heap: bool = False
    """After start-up, freeze what is alive (``settle_heap()``): the entry point's choice
    (``run_bot.py``), not a test's, whose process starts many engines."""

    async def start(self) -> None:
        sys.setswitchinterval(THREAD_HANDOFF_S)
        await self.engine.start()
        if self.settle_heap:
            settle_heap()

    async def stop(self) -> None:
        try:
            await self.engine.stop()
        finally:
            self.feed.close()


def settle_heap() -> None:
    """Collect once, then take every object alive after start-up (settings, strategies and
    their history, the book, caches) out of the cyclic garbage collector's sight
    (``gc.freeze``). Its oldest generation walked all of them on each pass, holding the loop
    for 20+ ms in a replay of 100 symbols; reference counting still frees them as before."""
    gc.collect()
    gc.freeze()


class StartupError(DomainError):
    """The app cannot be built from what it was given: a one-line reason for the trader."""


async def build_app(
    settings: Settings, *, bus: EventBus | None = None, settle_heap: bool = False
) -> EngineApp:
    """Wire everything (``settle_heap``: see ``EngineApp.settle_heap``); raises
    ``StartupError`` for a bad bars file, an unreadable simulator state, a journal that
    cannot be opened (or newer than this code), or a data dir that cannot be written."""
    try:
        app = await _build(settings, bus)
    except (ValueError, OSError, SchemaError, JournalOpenError) as exc:  # BarDataError: ValueError
        raise StartupError(str(exc)) from exc
    app.settle_heap = settle_heap
    return app


async def _build(settings: Settings, bus: EventBus | None) -> EngineApp:
    bus = bus or EventBus()
    # First: a strategy that cannot be loaded stops start-up before anything is touched.
    strategies = StrategyHost(load_strategies(settings.strategy.slots))
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    # State that was there before this start: an empty journal beside it is refused.
    earlier_state = [
        path
        for path in (
            settings.storage.data_dir / SIM_STATE_FILE,
            settings.storage.data_dir / HEALTH_FILE,
        )
        if path.exists()
    ]
    clock: Clock
    broker: Broker
    feed: MarketDataFeed
    extra_sinks: list[PriceListener] = []
    if settings.mode == "sim":
        clock, sim_broker, feed = _build_sim(settings, strategies)
        broker = sim_broker
        extra_sinks.append(sim_broker)
    else:
        clock, broker, feed = _build_alpaca(settings, bus)

    # Knowledge time is when we learned something: always the wall clock, even in a replay.
    journal = await Journal.open(
        settings.storage.db_path,
        SystemClock(),
        flush_interval=settings.storage.write_behind_ms / 1000,
        other_state=earlier_state,
    )
    try:
        engine = TradingEngine(
            mode=settings.mode,
            broker=broker,
            feed=feed,
            strategies=strategies,
            journal=journal,
            bus=bus,
            clock=clock,
            risk=settings.risk,
            settings=settings.engine,
            storage=settings.storage,
            allowed_symbols=settings.allowed_symbols,
            extra_sinks=extra_sinks,
            outage_halt_s=None if settings.mode == "sim" else settings.alpaca.outage_halt_s,
            watchdog=WatchdogLimits(
                stale_data_s=settings.schedule.stale_data_seconds,
                engine_stale_s=settings.schedule.engine_stale_seconds,
            ),
        )
    except Exception:
        await journal.close()
        raise
    return EngineApp(
        settings=settings,
        clock=clock,
        bus=bus,
        journal=journal,
        broker=broker,
        feed=feed,
        engine=engine,
        commands=CommandService(engine),
    )


def _build_sim(
    settings: Settings, strategies: StrategyHost
) -> tuple[ReplayClock, SimBroker, ReplayFeed]:
    """The simulator and a replay of minute bars, streamed from the file (it keeps only the
    history the strategies ask for). A restarted simulator resumes the replay where its
    market left off, so the 'broker' and the market stay consistent."""
    sim = settings.sim
    symbols = set(strategies.symbols)
    history_limit = max(strategies.warmup_bars(s) for s in symbols)
    bars: BarSource
    if sim.replay_start is not None:  # SIM_REPLAY_START/END: days from the history cache
        bars = cached_replay(settings, sorted(symbols))
    else:
        path = sim.replay_csv or SAMPLE_BARS_PATH
        bars = CsvBars(path, keep=history_limit)  # its scan keeps the history: read once
        if not symbols & set(bars.counts):
            held = sorted(bars.counts)
            listed = ", ".join(held[:8]) + (f" and {len(held) - 8} more" if len(held) > 8 else "")
            raise ValueError(
                f"{path} holds no bars for the strategy's symbols ({', '.join(sorted(symbols))}) "
                f"but only for {listed or 'no symbol'}: set STRATEGY_SYMBOLS (or each "
                "STRATEGY_<NAME>__SYMBOLS) to symbols in the file, or SIM_REPLAY_CSV to another "
                "file"
            )
    replay_from = bars.last_session_start
    assert replay_from is not None  # a CsvBars or a cached replay holds at least one bar
    clock = ReplayClock(replay_from)
    broker = SimBroker.create(settings.storage.data_dir / SIM_STATE_FILE, sim, clock)
    resume_at = max(replay_from, broker.exchange.last_ts)
    clock.set(resume_at)
    feed = ReplayFeed(
        bars,
        clock=clock,
        speed=sim.replay_multiplier,
        replay_from=resume_at,
        symbols=symbols,
        history_limit=history_limit,
    )
    if resume_at > replay_from:
        log.info("simulator resumes the replay at %s", resume_at.isoformat())
    return clock, broker, feed


def _build_alpaca(settings: Settings, bus: EventBus) -> tuple[Clock, Broker, MarketDataFeed]:
    """Alpaca paper or live: wall-clock time, the REST + trade-update broker, the v2 data
    stream. Stream drops become ``ConnectionChanged`` events on the bus."""
    from engine.broker.alpaca import build_alpaca  # alpaca-py loads only in paper/live

    clock = SystemClock()
    broker, feed = build_alpaca(settings, clock)
    if broker.stream is not None:
        broker.stream.on_connection = _connection_events(bus, clock, "trade_updates")
    feed.on_connection = _connection_events(bus, clock, "market_data")
    return clock, broker, feed


def _connection_events(bus: EventBus, clock: Clock, component: str) -> Callable[[bool, str], None]:
    def publish(up: bool, detail: str) -> None:
        bus.publish(ConnectionChanged(ts=clock.now(), component=component, up=up, detail=detail))

    return publish
