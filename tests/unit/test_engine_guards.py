"""The engine's own guards: the dead-man's switch runs inside the engine (no scheduler needed)
and a REDUCING it set before a restart lifts itself once data is fresh again."""

from __future__ import annotations

from pathlib import Path

from engine.domain import TradingState
from engine.watchdog import WatchdogLimits
from tests.support.app import wait_for
from tests.unit.engine_stubs import build_engine, ny

FAST = WatchdogLimits(stale_data_s=0.2, engine_stale_s=600)
SLOW = WatchdogLimits(stale_data_s=4, engine_stale_s=600)  # checked every second, never trips


async def test_start_when_no_scheduler_and_data_goes_stale_then_engine_moves_to_reducing(
    tmp_path: Path,
) -> None:
    p = await build_engine(tmp_path, watchdog=FAST)  # 11:00 New York: the market is open
    await p.engine.start()
    try:
        await wait_for(lambda: p.engine.state.state is TradingState.REDUCING, within=5)
        record = p.engine.state.record
    finally:
        await p.engine.stop()

    assert (record.actor, record.cause) == ("watchdog", "stale_data")


async def test_restart_when_watchdog_reducing_restored_then_lifted_once_data_is_fresh(
    tmp_path: Path,
) -> None:
    first = await build_engine(tmp_path)
    await first.journal.record_trading_state(
        TradingState.REDUCING, "watchdog", "market data stale", "stale_data", ny(10, 59)
    )
    await first.journal.close()

    p = await build_engine(tmp_path, watchdog=SLOW)
    await p.engine.start()
    try:
        restored = p.engine.state.state
        watchdog = p.engine.control.watchdog
        assert watchdog is not None
        await wait_for(lambda: bool(watchdog.tripped), within=2)  # the first check adopted it
        p.feed.health.last_message_mono = p.clock.monotonic()  # fresh data after the restart
        await wait_for(lambda: p.engine.state.state is TradingState.ACTIVE, within=5)
        record = p.engine.state.record
    finally:
        await p.engine.stop()

    assert restored is TradingState.REDUCING
    assert (record.actor, record.reason) == ("watchdog", "stale_data recovered")


async def test_restart_when_person_set_reducing_then_watchdog_leaves_it(tmp_path: Path) -> None:
    first = await build_engine(tmp_path)
    await first.journal.record_trading_state(
        TradingState.REDUCING, "alice", "cautious", "manual", ny(10, 59)
    )
    await first.journal.close()

    p = await build_engine(tmp_path, watchdog=SLOW)
    await p.engine.start()
    try:
        p.feed.health.last_message_mono = p.clock.monotonic()
        watchdog = p.engine.control.watchdog
        assert watchdog is not None
        await watchdog.check()
        await watchdog.check()
        record = p.engine.state.record
    finally:
        await p.engine.stop()

    assert (record.state, record.actor) == (TradingState.REDUCING, "alice")
