"""The engine's running loops beside its bar/evaluate path (which lives in ``engine.engine``):
the market-data feed, the trade-update consumer, the periodic beat, the liveness file and the
loop-lag probe. Each is a plain coroutine given only the parts it uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.broker.port import Broker, RejectedUpdate, StreamGap
from engine.clock import Clock
from engine.errors import BrokerError
from engine.events import Severity
from engine.execution import ExecutionManager
from engine.feed.base import MarketDataFeed, MarketDataSink
from engine.health import LatencyStats, write_health_file
from engine.risk import TradingStateController

log = logging.getLogger(__name__)

ErrorReporter = Callable[[str, str, Severity], None]
"""``(component, message, severity)``: publishes an ``EngineError``."""


class Activity:
    """How many updates (bars, ticks, trade updates) are being worked on right now.

    Replay pacing and a graceful stop wait for it to reach zero."""

    def __init__(self) -> None:
        self.busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.busy += 1
        self._idle.clear()

    def end(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


async def run_feed(feed: MarketDataFeed, sink: MarketDataSink, report: ErrorReporter) -> None:
    try:
        await feed.run(sink)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("market data feed stopped")
        report("market_data", f"feed stopped: {exc}", Severity.CRITICAL)


async def consume_trade_updates(
    broker: Broker,
    execution: ExecutionManager,
    activity: Activity,
    report: ErrorReporter,
    after_each: Callable[[], None],
) -> None:
    """Apply every trade update in order; a stream gap is closed by a REST recovery."""
    async for item in broker.trade_updates():
        activity.begin()
        try:
            if isinstance(item, StreamGap):
                applied = await execution.recover(item.down_at - timedelta(minutes=1))
                log.info("trade-update gap recovered: %d missed fills applied", applied)
            elif isinstance(item, RejectedUpdate):
                await execution.on_malformed_update(item.raw, item.reason)
            else:
                await execution.on_trade_update(item)
        except asyncio.CancelledError:
            raise
        except BrokerError as exc:
            report("broker", f"recovery after a stream gap failed: {exc}", Severity.WARNING)
        except Exception as exc:
            log.exception("trade update failed: %r", item)
            report("orders", f"trade update not applied: {exc}", Severity.CRITICAL)
        finally:
            activity.end()
        after_each()


async def every(interval_s: float, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` every ``interval_s`` seconds, first after one interval, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await work()


async def write_liveness(
    path: Path, interval_s: float, state: TradingStateController, clock: Clock
) -> None:
    """The container HEALTHCHECK reads this file; the engine writes it while its loop
    runs, so a wedged or dead engine goes stale."""
    while True:
        payload = {
            "ts": datetime.now(UTC).isoformat(),
            "state": state.state.value,
            "market_time": clock.now().isoformat(),
        }
        try:
            await asyncio.to_thread(write_health_file, path, payload)
        except OSError as exc:
            log.warning("cannot write the liveness file %s: %s", path, exc)
        await asyncio.sleep(interval_s)


async def measure_loop_lag(interval_s: float, stats: LatencyStats) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval_s)
        stats.add(max(0.0, loop.time() - before - interval_s))
