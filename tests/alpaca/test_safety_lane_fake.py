"""Safety calls first: a halt after a burst that used up the request budget, with ordinary
requests hung on every REST thread, still cancels and flattens at once (paper mode on the
fake, the real 190-a-minute budget)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from engine.app import build_app
from engine.broker.alpaca import AlpacaBroker
from engine.broker.alpaca.calls import MAX_WORKERS
from engine.broker.resilience import RequestBudget
from engine.bus import EventBus
from engine.domain import Tick, TradingState
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import seed_position, wait_for


async def test_halt_when_budget_saturated_and_threads_hung_then_flat_without_waiting(
    tmp_path: Path,
) -> None:
    async with FakeAlpaca(always_open=True) as fake:
        app = await build_app(fake_settings(fake, tmp_path, request_timeout_s=30), bus=EventBus())
        broker = app.broker
        assert isinstance(broker, AlpacaBroker)
        fast(broker, app.feed)
        await app.start()
        burst: list[asyncio.Task[object]] = []
        try:
            fake.push_trade(Tick("AAPL", datetime.now(UTC), Decimal(100), Decimal(10)))
            await seed_position(app, "AAPL", 5)
            broker.calls.budget = RequestBudget(per_minute=190, monotonic=time.monotonic)
            fake.knobs.hang_path_prefix = "/v2/account"
            fake.knobs.hang_next = MAX_WORKERS  # every ordinary thread stuck
            loop = asyncio.get_running_loop()
            burst = [loop.create_task(broker.get_account()) for _ in range(200)]
            await wait_for(lambda: broker.budget.available <= broker.budget.reserve, 10)

            result = await asyncio.wait_for(app.commands.halt("trader", "after a burst"), 10)
            queued = sum(not task.done() for task in burst)
            positions = fake.exchange.positions()
        finally:
            for task in burst:
                task.cancel()
            await asyncio.gather(*burst, return_exceptions=True)
            await app.stop()

    assert result.record.state is TradingState.HALTED
    assert result.flatten is not None
    assert result.flatten.flat is True
    assert positions == []
    assert queued > 0, "the ordinary burst should still be waiting for the budget"
    assert broker.budget.granted_safety >= 3  # cancel-all, close-all and the confirming reads
