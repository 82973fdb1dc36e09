"""Broker back after an outage -> reconcile at once (issue 11.6): the fake dies, comes back
empty on the same address, and the engine's book follows it without a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from engine.app import build_app
from engine.bus import EventBus
from engine.domain import Tick, TradingState
from engine.events import Notice, ReconcileDrift, Severity
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import seed_position, wait_for


async def test_broker_back_empty_after_outage_then_book_follows_and_drift_reported(
    tmp_path: Path,
) -> None:
    bus = EventBus()
    drifts: list[ReconcileDrift] = []
    bus.subscribe(ReconcileDrift, drifts.append)
    notices: list[Notice] = []
    bus.subscribe(Notice, notices.append)
    fake = FakeAlpaca(always_open=True)
    await fake.start()
    settings = fake_settings(fake, tmp_path, outage_halt_s=1.0, request_timeout_s=0.5)
    app = await build_app(settings, bus=bus)
    fast(app.broker, app.feed)
    await app.start()
    back = FakeAlpaca(always_open=True)  # a fresh account: no positions, no orders
    try:
        fake.push_trade(Tick("AAPL", datetime.now(UTC), Decimal(100), Decimal(10)))
        await seed_position(app, "AAPL", 5)
        port = fake.port
        await fake.stop()
        await wait_for(lambda: app.engine.state.state is TradingState.HALTED, 10)
        held_during_outage = app.engine.portfolio.qty("AAPL")
        await back.start(port=port)
        await wait_for(lambda: any(n.kind == "broker-back" for n in notices), 15)
        reconciled = app.engine.last_reconcile
        qty_after = app.engine.portfolio.qty("AAPL")
    finally:
        await app.stop()
        await back.stop()
        await fake.stop()

    assert held_during_outage == Decimal(5)
    assert qty_after == 0
    assert reconciled is not None
    assert reconciled.positions == 0
    assert [(d.kind, d.key, d.broker) for d in drifts if d.kind == "position"] == [
        ("position", "AAPL", "0 @ 0")
    ]
    assert app.engine.state.state is TradingState.HALTED  # the halt stays until a person acts
    # #system-alerts hears it: the broker is back, what the reconcile found, the halt stands.
    [back_notice] = [n for n in notices if n.kind == "broker-back"]
    assert back_notice.severity is Severity.WARNING
    assert back_notice.text.startswith("📶 Broker reachable again: broker back after an outage")
    assert "Reconcile: 0 positions, 0 open orders, 0 missed fills recovered, 2 corrected." in (
        back_notice.text  # the position and the cash
    )
    assert back_notice.text.endswith(
        "Trading stays HALTED, set by broker-watchdog: !resume when ready."
    )
