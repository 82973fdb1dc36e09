"""Broker hang or death -> HALT on time, against the real fake: in process (frozen), and as
its own process stopped with SIGSTOP or killed with SIGKILL."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from config import load_settings
from engine.app import build_app
from engine.broker.alpaca import AlpacaBroker, build_alpaca
from engine.broker.outage import OutageMonitor
from engine.bus import EventBus
from engine.clock import SystemClock
from engine.domain import TradingState
from engine.errors import BrokerTimeout
from tests.alpaca.conftest import StandaloneFake, fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import wait_for


async def test_frozen_broker_when_first_timeout_then_status_unhealthy_and_outage_dated_from_send(
    tmp_path: Path,
) -> None:
    async with FakeAlpaca(always_open=True) as fake:
        settings = fake_settings(fake, tmp_path, outage_halt_s=2.0, request_timeout_s=0.5)
        app = await build_app(settings, bus=EventBus())
        assert isinstance(app.broker, AlpacaBroker)
        fast(app.broker, app.feed)
        await app.start()
        try:
            healthy = (await app.commands.status("test")).broker.ok
            fake.freeze()
            sent = time.monotonic()
            with pytest.raises(BrokerTimeout):  # one attempt, never answered
                await app.broker.calls.call("account", lambda c: c.get_account())
            timed_out = time.monotonic()
            status = await app.commands.status("test")
            down_since = app.broker.health.down_since_mono
            await wait_for(lambda: app.engine.state.state is TradingState.HALTED, 10)
            record = app.engine.state.record
        finally:
            fake.thaw()
            await app.stop()

    assert healthy is True
    assert status.broker.ok is False  # unhealthy from the first timeout on
    assert "did not answer" in status.broker.last_error
    # Dated from when the request went out (or an earlier unanswered one), not its timeout.
    assert down_since is not None
    assert down_since - sent < (timed_out - sent) / 2
    assert record.cause == "broker_unreachable"


class Watched:
    """A broker on the standalone fake and its outage watchdog, which probes an idle broker
    only every 30 s: within the test's few seconds only the trade stream's liveness (a drop,
    a missing pong) can make it notice."""

    def __init__(self, broker: AlpacaBroker) -> None:
        self.broker = broker
        self.halts: list[str] = []
        self.recoveries: list[str] = []
        self.monitor = OutageMonitor(
            broker.health,
            SystemClock(),
            halt_after_s=2.0,
            halt=self._halt,
            probe=broker.get_clock,
            on_recovered=self._recovered,
            interval_s=0.1,
            probe_every_s=30.0,
            reconcile_after_s=1.0,
        )

    async def _halt(self, reason: str) -> None:
        self.halts.append(reason)

    async def _recovered(self, reason: str) -> None:
        self.recoveries.append(reason)


@asynccontextmanager
async def watched(fake: StandaloneFake, tmp_path: Path) -> AsyncIterator[Watched]:
    env = fake.env
    settings = load_settings(
        None,
        mode="paper",
        alpaca={
            "api_key": env["APCA_API_KEY_ID"],
            "secret_key": env["APCA_API_SECRET_KEY"],
            "trading_url": env["ALPACA_TRADING_URL"],
            "trade_stream_url": env["ALPACA_TRADE_STREAM_URL"],
            "data_url": env["ALPACA_DATA_URL"],
            "data_stream_url": env["ALPACA_DATA_STREAM_URL"],
            "request_timeout_s": 0.5,
        },
        storage={"data_dir": tmp_path},
    )
    broker, feed = build_alpaca(settings, SystemClock())
    fast(broker, feed)
    assert broker.stream is not None
    broker.stream.liveness_s = 0.2
    await broker.connect()
    await broker.get_account()  # just answered: the watchdog has no reason to probe
    watch = Watched(broker)
    runner = asyncio.get_running_loop().create_task(watch.monitor.run())
    try:
        yield watch
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await broker.close()
        feed.close()


@pytest.mark.slow
async def test_stopped_broker_process_when_idle_then_halt_from_missing_pong_and_reconcile_after(
    standalone_fake: StandaloneFake, tmp_path: Path
) -> None:
    async with watched(standalone_fake, tmp_path) as watch:
        standalone_fake.signal(signal.SIGSTOP)
        await wait_for(lambda: watch.halts, 10)
        standalone_fake.signal(signal.SIGCONT)
        await wait_for(lambda: watch.recoveries, 10)

    assert len(watch.halts) == 1
    assert re.search(r"unreachable for \d+ s \(limit 2 s\)", watch.halts[0])
    assert watch.broker.health.ok is True
    assert watch.recoveries[0].startswith("broker back after an outage of")


@pytest.mark.slow
async def test_killed_broker_process_when_idle_then_halt_from_stream_drop(
    standalone_fake: StandaloneFake, tmp_path: Path
) -> None:
    async with watched(standalone_fake, tmp_path) as watch:
        standalone_fake.signal(signal.SIGKILL)
        await wait_for(lambda: watch.halts, 10)

    assert len(watch.halts) == 1
    assert re.search(r"unreachable for \d+ s \(limit 2 s\)", watch.halts[0])
    assert "cannot reach Alpaca" in watch.halts[0] or "paused" in watch.halts[0]
