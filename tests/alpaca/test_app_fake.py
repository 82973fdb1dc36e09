"""The whole engine in paper mode on the fake Alpaca: trade, status, flatten and halt as on
the simulator. ``engine.app._build_alpaca`` is replaced by the wiring proposed for it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import engine.app
from engine.app import build_app
from engine.broker.alpaca import build_alpaca
from engine.clock import SystemClock
from engine.domain import Tick, TradingState
from engine.feed.alpaca_data import AlpacaDataFeed
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import seed_position, wait_for


async def test_app_when_paper_on_fake_then_trades_flattens_and_halts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeAlpaca(always_open=True) as fake:
        settings = fake_settings(fake, tmp_path)
        feeds: list[AlpacaDataFeed] = []

        def wiring(*_: Any, **__: Any) -> tuple[Any, Any, Any]:
            clock = SystemClock()
            broker, feed = build_alpaca(settings, clock)
            fast(broker, feed)
            feeds.append(feed)
            return clock, broker, feed

        monkeypatch.setattr(engine.app, "_build_alpaca", wiring)
        app = await build_app(settings)
        await app.start()
        try:
            for symbol, price in (("AAPL", "100"), ("MSFT", "200")):
                fake.push_trade(Tick(symbol, datetime.now(UTC), Decimal(price), Decimal(10)))
            await seed_position(app, "AAPL", 5)
            await seed_position(app, "MSFT", -3)
            await wait_for(lambda: fake.connected_data_streams() == 1, 5)
            status = await app.commands.status("tester")
            report = await app.commands.flatten("tester")
            venue_positions = await app.broker.get_positions()
            halted = await app.commands.halt("tester", "end of test")
        finally:
            await app.stop()
            for feed in feeds:
                feed.close()

    assert status.positions == 2
    assert status.broker.ok is True
    assert report.flat is True
    assert [o.status for o in report.outcomes] == ["closed", "closed"]
    assert venue_positions == []
    assert app.engine.portfolio.qty("AAPL") == Decimal(0)
    assert app.engine.portfolio.qty("MSFT") == Decimal(0)
    assert halted.record.state is TradingState.HALTED
