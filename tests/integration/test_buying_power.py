"""Low starting cash on the simulator: every order the account cannot pay for is refused by
our own risk gate with its reason, none by the broker."""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest

from engine.app import build_app
from engine.domain import OrderStatus
from engine.events import Event, OrderUpdated, RiskRejected
from engine.risk import RejectReason
from tests.support.app import sim_settings, wait_for


@pytest.mark.parametrize("cash", ["1000", "5000"])
async def test_replay_when_starting_cash_is_low_then_only_our_gate_refuses_for_buying_power(
    tmp_path: Path, cash: str
) -> None:
    # Before: the gate's figure was the start-of-day snapshot (refreshed every 30 s of wall
    # clock), so with 5,000 the simulator rejected two MSFT orders with a bare "rejected".
    settings = sim_settings(tmp_path, until=time(16, 0), sim={"starting_cash": cash})
    app = await build_app(settings)
    events: list[Event] = []
    app.bus.subscribe(RiskRejected, events.append)
    app.bus.subscribe(OrderUpdated, events.append)
    await app.start()
    try:
        await wait_for(lambda: app.feed.health.finished, within=60)
        await app.engine.settle()
        account = await app.broker.get_account()
    finally:
        await app.stop()

    broker_rejections = [
        e for e in events if isinstance(e, OrderUpdated) and e.status is OrderStatus.REJECTED
    ]
    refusals = [
        e
        for e in events
        if isinstance(e, RiskRejected) and e.reason == RejectReason.BUYING_POWER.value
    ]
    assert broker_rejections == []
    assert refusals, "the sample's orders cost more than this account can pay"
    for refusal in refusals:
        assert re.fullmatch(
            r"order needs \$[\d,.]+ of buying power; \$[\d,.]+ available", refusal.detail
        )
    if cash == "5000":
        # The account traded, and the gate's figure moved with it (2 x 5,000 untouched).
        assert app.engine.execution.fills_applied > 0
        assert any("$10,000.00 available" not in r.detail for r in refusals)
    assert app.engine.portfolio.cash == account.cash
    assert Decimal(0) <= account.buying_power
