"""A real engine on the simulator for tests: real SQLite, real sim exchange, replayed bars.

The replay covers the sample's first day (warm-up history) and the second day up to a cut-off
(default 12:00 New York), played as fast as possible, so when it ends the market is still
open and flatten/halt behave as during the session.
"""

from __future__ import annotations

import asyncio
import csv
import time as _time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from engine.app import EngineApp, build_app
from engine.clock import NEW_YORK
from engine.domain import OrderRequest, Side
from engine.feed.replay import SAMPLE_BARS_PATH
from engine.orders import make_client_order_id

REPLAY_DAY = datetime(2026, 11, 20).date()


def truncated_sample_csv(directory: Path, until: time = time(12, 0)) -> Path:
    """The bundled sample, cut at ``until`` (New York) on its last day."""
    cutoff = datetime.combine(REPLAY_DAY, until, NEW_YORK)
    out = directory / f"bars_until_{until:%H%M}.csv"
    with SAMPLE_BARS_PATH.open(newline="") as src, out.open("w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        for row in reader:
            if datetime.fromisoformat(row[0].replace("Z", "+00:00")) < cutoff:
                writer.writerow(row)
    return out


def sim_settings(tmp_path: Path, *, until: time = time(12, 0), **overrides: Any) -> Settings:
    """Sim-mode settings on a temp data dir and a truncated, as-fast-as-possible replay.

    Section overrides are dicts merged over these defaults, e.g. ``risk={...}``.
    """
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    sim: dict[str, Any] = {
        "replay_speed": "max",
        "replay_csv": truncated_sample_csv(tmp_path, until),
    }
    sim.update(overrides.pop("sim", {}))
    storage: dict[str, Any] = {"data_dir": data_dir}
    storage.update(overrides.pop("storage", {}))
    return load_settings(None, mode="sim", sim=sim, storage=storage, **overrides)


async def wait_for(
    predicate: Callable[[], bool], within: float = 10.0, interval: float = 0.01
) -> None:
    """Poll ``predicate`` until true; fail with a clear message after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


async def start_app(settings: Settings, *, replay_done: bool = True) -> EngineApp:
    """Build and start; by default wait until the replay has ended and the engine settled."""
    app = await build_app(settings)
    await app.start()
    if replay_done:
        await wait_for(lambda: app.feed.health.finished, within=60)
        await app.engine.settle()
    return app


async def seed_position(app: EngineApp, symbol: str, qty: Decimal | int | str) -> None:
    """Trade ``symbol`` to a signed position of ``qty`` through the real order path."""
    target = Decimal(qty)
    delta = target - app.engine.portfolio.qty(symbol)
    if delta == 0:
        return
    side = Side.BUY if delta > 0 else Side.SELL
    request = OrderRequest(
        client_order_id=make_client_order_id("test", symbol, app.clock.now(), tag=str(target)),
        symbol=symbol,
        side=side,
        qty=abs(delta),
        strategy="test",
    )
    result = await app.engine.execution.submit(request, checked=False)
    assert result.order is not None
    await wait_for(lambda: app.engine.portfolio.qty(symbol) == target)
    await app.engine.execution.drain()  # its fills journaled and announced


async def stopped(app: EngineApp, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` and always stop the app afterwards."""
    try:
        await body()
    finally:
        await app.stop()


class ShiftedClock:
    """Wall-clock time that starts at a chosen instant and runs in real time, so tests
    against a server (which waits in real time) still decide market hours deterministically.
    ``jump`` moves it forward (past the close, say)."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._mono0 = _time.monotonic()
        self._offset = 0.0

    def now(self) -> datetime:
        elapsed = _time.monotonic() - self._mono0 + self._offset
        return (self._start + timedelta(seconds=elapsed)).astimezone(UTC)

    def monotonic(self) -> float:
        return _time.monotonic()

    def jump(self, seconds: float) -> None:
        self._offset += seconds
