"""``build_app`` in paper mode with the real wiring (``engine.app._build_alpaca``): stream
drops reach the bus as ``ConnectionChanged`` and an unreachable broker halts the engine.
Skipped until the wiring from the Alpaca report is applied to engine/app.py and engine.py."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from engine.app import build_app
from engine.broker.alpaca import AlpacaBroker
from engine.bus import EventBus
from engine.domain import Tick, TradingState
from engine.events import ConnectionChanged, EngineError, Severity
from engine.feed.alpaca_data import AlpacaDataFeed
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import seed_position, wait_for


async def test_app_when_streams_drop_and_broker_down_then_events_and_auto_halt(
    tmp_path: Path,
) -> None:
    bus = EventBus()
    events: list[ConnectionChanged | EngineError] = []
    bus.subscribe(ConnectionChanged, events.append)
    bus.subscribe(EngineError, events.append)
    async with FakeAlpaca(always_open=True) as fake:
        settings = fake_settings(fake, tmp_path, outage_halt_s=0.5, request_timeout_s=0.3)
        app = await build_app(settings, bus=bus)
        assert isinstance(app.broker, AlpacaBroker)
        assert isinstance(app.feed, AlpacaDataFeed)
        fast(app.broker, app.feed)
        await app.start()
        try:
            fake.push_trade(Tick("AAPL", datetime.now(UTC), Decimal(100), Decimal(10)))
            await seed_position(app, "AAPL", 5)
            await wait_for(lambda: fake.connected_data_streams() == 1, 5)
            await fake.drop_trade_streams()
            await fake.drop_data_streams()
            await wait_for(lambda: sum(isinstance(e, ConnectionChanged) for e in events) >= 4, 5)
            fake.knobs.error_rate = 1.0
            await wait_for(lambda: app.engine.state.state is TradingState.HALTED, 10)
            record = app.engine.state.record
        finally:
            await app.stop()

    changes = {(e.component, e.up) for e in events if isinstance(e, ConnectionChanged)}
    assert changes == {
        ("trade_updates", False),
        ("trade_updates", True),
        ("market_data", False),
        ("market_data", True),
    }
    assert record.cause == "broker_unreachable"
    assert record.actor == "broker-watchdog"
    assert app.engine.portfolio.qty("AAPL") == Decimal(5)  # halted keeping positions
    critical = [e for e in events if isinstance(e, EngineError) and e.severity is Severity.CRITICAL]
    assert any("unreachable" in e.message for e in critical)
