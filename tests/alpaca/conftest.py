"""Shared helpers for the Alpaca tests: settings pointed at a FakeAlpaca, brokers and feeds
built by the real factory, with small timeouts and fast backoff so the suite stays quick."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings
from engine.backoff import Backoff
from engine.broker.alpaca import AlpacaBroker, build_alpaca
from engine.broker.port import RejectedUpdate, StreamGap, TradeUpdate
from engine.broker.resilience import RequestBudget
from engine.clock import Clock, SystemClock
from engine.domain import Bar, Tick
from engine.feed.alpaca_data import AlpacaDataFeed
from tests.fakes.alpaca import FakeAlpaca
from tests.support.console_proc import REPO

SYMBOLS = ["AAPL", "MSFT"]


def fake_settings(fake: FakeAlpaca, tmp_path: Path, **alpaca: Any) -> Settings:
    section: dict[str, Any] = {
        "api_key": fake.key_id,
        "secret_key": fake.secret_key,
        "trading_url": fake.base_url,
        "data_url": fake.data_url,
        "data_stream_url": fake.data_stream_url,
        "request_timeout_s": 2.0,
        "breaker_failures": 3,
        "breaker_reset_s": 5.0,
    }
    section.update(alpaca)
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    return load_settings(
        None,
        mode="paper",
        alpaca=section,
        strategy={"symbols": SYMBOLS},
        storage={"data_dir": data_dir},
    )


def fast(broker: AlpacaBroker, feed: AlpacaDataFeed | None = None) -> None:
    """Test tempo: a budget that never throttles (the budget has its own tests) and quick
    reconnects."""
    broker.calls.budget = RequestBudget(per_minute=60_000, monotonic=time.monotonic)
    if broker.stream is not None:
        broker.stream.backoff = Backoff(base_s=0.05, cap_s=0.2)
    if feed is not None:
        feed.backoff = Backoff(base_s=0.05, cap_s=0.2)


class StandaloneFake:
    """``python -m tests.fakes.alpaca`` in its own process, and the environment it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, env: dict[str, str]) -> None:
        self.proc = proc
        self.env = env

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)


@pytest.fixture
async def standalone_fake() -> AsyncIterator[StandaloneFake]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.alpaca",
        "--port",
        "0",
        "--speed",
        "1200",
        "--always-open",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    env: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while "ALPACA_DATA_STREAM_URL" not in env:
                line = (await proc.stdout.readline()).decode()
                assert line, "the fake exited before printing its environment"
                key, sep, value = line.strip().partition("=")
                if sep and key.isupper():
                    env[key] = value
        yield StandaloneFake(proc, env)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a test may have stopped it
                proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.wait()


@pytest.fixture
def fake_env(standalone_fake: StandaloneFake) -> dict[str, str]:
    """The environment the standalone fake printed, for a bot in paper mode."""
    return standalone_fake.env


BrokerMaker = Callable[..., AbstractAsyncContextManager[tuple[AlpacaBroker, AlpacaDataFeed]]]


@pytest.fixture
def make_broker(tmp_path: Path) -> BrokerMaker:
    """``async with make_broker(fake, clock=..., **alpaca_settings) as (broker, feed)``:
    built by ``build_alpaca``, closed afterwards."""

    @asynccontextmanager
    async def make(
        fake: FakeAlpaca, clock: Clock | None = None, **alpaca: Any
    ) -> AsyncIterator[tuple[AlpacaBroker, AlpacaDataFeed]]:
        broker, feed = build_alpaca(fake_settings(fake, tmp_path, **alpaca), clock or SystemClock())
        fast(broker, feed)
        try:
            yield broker, feed
        finally:
            await broker.close()
            feed.close()

    return make


class Collector:
    """Consumes a broker's ``trade_updates()`` in the background."""

    def __init__(self, broker: AlpacaBroker) -> None:
        self.items: list[TradeUpdate | StreamGap | RejectedUpdate] = []
        self._task = asyncio.get_running_loop().create_task(self._run(broker))

    async def _run(self, broker: AlpacaBroker) -> None:
        async for item in broker.trade_updates():
            self.items.append(item)

    @property
    def updates(self) -> list[TradeUpdate]:
        return [i for i in self.items if isinstance(i, TradeUpdate)]

    @property
    def gaps(self) -> list[StreamGap]:
        return [i for i in self.items if isinstance(i, StreamGap)]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Sink:
    """A ``MarketDataSink`` that records what it gets."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.ticks: list[Tick] = []

    def on_bar(self, bar: Bar) -> None:
        self.bars.append(bar)

    def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)

    async def settle(self, *, journaled: bool = True) -> None:
        return None

    def receiving(self, more: bool) -> None:
        return None


class Connections:
    """An ``on_connection`` callback that records ``(up, detail)``."""

    def __init__(self) -> None:
        self.events: list[tuple[bool, str]] = []

    def __call__(self, up: bool, detail: str) -> None:
        self.events.append((up, detail))
