"""The trade-update stream as Alpaca sends it, through the real engine in paper mode on the
fake: heartbeats, every documented event, notional orders and updates that cannot be read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.app import EngineApp, build_app
from engine.broker.alpaca import AlpacaBroker
from engine.bus import EventBus
from engine.domain import OrderRequest, OrderStatus, OrderType, Side, Tick
from engine.events import EngineError, Severity
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.fakes.alpaca.json_models import order_json
from tests.support.app import wait_for

RECOVERY_PATHS = ("/v2/orders", "/v2/account/activities/FILL")


@dataclass
class Rig:
    fake: FakeAlpaca
    app: EngineApp
    broker: AlpacaBroker
    errors: list[EngineError]

    def send(self, data: dict[str, Any]) -> None:
        self.fake.send_trade_frame({"stream": "trade_updates", "data": data})

    async def resting_limit(self, cid: str) -> dict[str, Any]:
        """A buy limit far below the market, open at the fake; its Alpaca JSON."""
        request = OrderRequest(
            client_order_id=cid,
            symbol="AAPL",
            side=Side.BUY,
            qty=Decimal(3),
            order_type=OrderType.LIMIT,
            limit_price=Decimal(50),
        )
        result = await self.app.engine.execution.submit(request, checked=False)
        assert result.order is not None
        assert result.order.is_open
        record = self.fake.exchange.order_by_client_id(cid)
        assert record is not None
        return order_json(record)

    def recovery_requests(self) -> int:
        return sum(1 for method, path in self.fake.requests if path in RECOVERY_PATHS)


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with FakeAlpaca(always_open=True) as fake:
        bus = EventBus()
        errors: list[EngineError] = []
        bus.subscribe(EngineError, errors.append)
        app = await build_app(fake_settings(fake, tmp_path), bus=bus)
        assert isinstance(app.broker, AlpacaBroker)
        fast(app.broker, app.feed)
        await app.start()
        try:
            await wait_for(lambda: fake.connected_trade_streams() == 1, 5)
            fake.push_trade(Tick("AAPL", datetime.now(UTC), Decimal(100), Decimal(10)))
            yield Rig(fake, app, app.broker, errors)
        finally:
            await app.stop()


async def test_heartbeats_when_engine_running_then_skipped_without_any_recovery(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        assert r.broker.stream is not None
        before = r.recovery_requests()
        for _ in range(25):
            r.fake.send_trade_frame("\n")
        await wait_for(lambda: r.broker.stream is not None and r.broker.stream.skipped == 25, 5)
        after = r.recovery_requests()

    assert after == before
    assert r.errors == []


@pytest.mark.parametrize("event", ["replaced", "suspended", "canceled", "expired"])
async def test_order_ended_by_venue_event_then_closed_and_symbol_free(
    tmp_path: Path, event: str
) -> None:
    async with rig(tmp_path) as r:
        placed = await r.resting_limit(f"ends-{event}")
        assert r.app.engine.orders.has_open("AAPL")
        status = {"replaced": "replaced", "suspended": "suspended"}.get(event, event)
        r.send({"event": event, "order": {**placed, "status": status}})
        order = r.app.engine.orders.get(f"ends-{event}")
        assert order is not None
        await wait_for(lambda: not order.is_open, 5)

    assert order.status is OrderStatus.CANCELLED if event != "expired" else OrderStatus.EXPIRED
    assert not r.app.engine.orders.has_open("AAPL")


async def test_order_still_working_event_then_stays_open(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        placed = await r.resting_limit("keeps-working")
        for event in ("done_for_day", "pending_replace", "order_replace_rejected", "stopped"):
            r.send({"event": event, "order": placed})
        r.send({"event": "canceled", "order": {**placed, "status": "canceled"}})  # a marker
        order = r.app.engine.orders.get("keeps-working")
        assert order is not None
        await wait_for(lambda: not order.is_open, 5)
        statuses = [e for e in r.errors if "keeps-working" in e.message]

    assert order.reason == "canceled"  # the four before it changed nothing
    assert statuses == []


async def test_notional_order_placed_by_hand_when_filled_then_closed_and_position_held(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    snapshot: dict[str, Any] = {
        "id": "8f0e3d52-0000-4000-8000-00000000a001",
        "client_order_id": "by-hand-notional",
        "symbol": "AAPL",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "qty": None,
        "notional": "50",
        "filled_qty": "0",
        "filled_avg_price": None,
        "status": "new",
        "submitted_at": now,
        "created_at": now,
        "updated_at": now,
    }
    async with rig(tmp_path) as r:
        r.send({"event": "new", "order": snapshot, "timestamp": now})
        part = {**snapshot, "filled_qty": "0.2", "status": "partially_filled"}
        r.send({"event": "partial_fill", "order": part, "qty": "0.2", "price": "100"})
        done = {**snapshot, "filled_qty": "0.5", "filled_avg_price": "100", "status": "filled"}
        r.send({"event": "fill", "order": done, "qty": "0.3", "price": "100"})
        engine = r.app.engine
        await wait_for(lambda: engine.portfolio.qty("AAPL") == Decimal("0.5"), 5)
        order = engine.orders.get("by-hand-notional")
        assert order is not None
        await wait_for(lambda: not order.is_open, 5)

    assert (order.status, order.qty, order.filled_qty) == (
        OrderStatus.FILLED,
        Decimal("0.5"),
        Decimal("0.5"),
    )
    assert not engine.orders.has_open("AAPL")


@pytest.mark.parametrize(
    ("change", "named"),
    [({"qty": "-3"}, "qty"), ({"price": "abc"}, "price"), ({"order": "filled"}, "order")],
)
async def test_unreadable_fill_when_engine_running_then_quarantined_alerted_and_recovered(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    async with rig(tmp_path) as r:
        placed = await r.resting_limit("poisoned")
        before = r.recovery_requests()
        filled = {**placed, "filled_qty": "3", "status": "filled"}
        r.send({"event": "fill", "order": filled, "qty": "3", "price": "50", **change})
        journal = r.app.engine.journal
        await wait_for(lambda: any(e.severity is Severity.CRITICAL for e in r.errors), 5)
        await wait_for(lambda: r.recovery_requests() > before, 5)
        kept = await journal.quarantined(10)
        qty = r.app.engine.portfolio.qty("AAPL")

    assert len(kept) == 1
    assert named in kept[0].reason
    assert qty == 0  # nothing applied
    assert any("quarantined" in e.message for e in r.errors)
