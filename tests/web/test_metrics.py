"""``/metrics`` read back with prometheus_client's own text parser, on the simulator and on
the fake Alpaca server (which has a request budget, a circuit breaker and a trade stream)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import engine.app
from bot.alerts import AlertRouter, ConsoleTransport
from bot.messages import AlertMessage, Channel
from bot.web import WebServer
from engine.app import EngineApp, build_app
from engine.broker.alpaca import build_alpaca
from engine.clock import SystemClock
from engine.domain import OrderRequest, Side, Tick
from engine.events import Severity
from engine.orders import make_client_order_id
from engine.risk.gate import RejectReason
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import seed_position, wait_for
from tests.web.conftest import AUTH, TOKEN, Client
from tests.web.helpers import rest_limit_buy

Labels = frozenset[tuple[str, str]]


class Scrape:
    """One scrape, parsed: families by name and every sample by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, Labels], float] = {}
        all_samples: list[Sample] = [s for f in self.families.values() for s in f.samples]
        for s in all_samples:
            self.samples[s.name, frozenset(s.labels.items())] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[name, frozenset(labels.items())]

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {dict(key)[label]: value for (n, key), value in self.samples.items() if n == name}


async def scrape(client: Client) -> Scrape:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return Scrape(await response.text())


async def test_metrics_when_scraped_then_state_money_book_and_counts_read_back(
    client: Client, sim_app: EngineApp
) -> None:
    await seed_position(sim_app, "MSFT", -7)
    await rest_limit_buy(sim_app, "AAPL", 2, "1.00")

    m = await scrape(client)

    e = sim_app.engine
    assert m.by_label("trader_trading_state", "state") == {
        "ACTIVE": 1.0,
        "REDUCING": 0.0,
        "HALTED": 0.0,
    }
    assert m.value("trader_info", mode="sim", broker="sim") == 1.0
    summary = e.portfolio.summary()
    assert m.value("trader_equity_dollars") == pytest.approx(float(summary.equity))
    assert summary.day_pnl is not None
    assert m.value("trader_day_pnl_dollars") == pytest.approx(float(summary.day_pnl))
    assert m.value("trader_cash_dollars") == pytest.approx(float(e.portfolio.cash))
    positions = e.portfolio.positions()
    assert m.value("trader_positions") == len(positions)
    assert m.by_label("trader_position_shares", "symbol") == {
        p.symbol: float(p.qty) for p in positions
    }
    assert m.value("trader_position_shares", symbol="MSFT") == -7.0
    assert m.value("trader_open_orders") == 1.0
    fills = await sim_app.journal.load_fills()
    by_side = m.by_label("trader_fills_total", "side")
    assert sum(by_side.values()) == len(fills)
    assert by_side["sell"] == sum(1 for f in fills if f.side is Side.SELL)
    filled_orders = {f.client_order_id for f in fills}
    assert m.value("trader_orders_filled_total") == len(filled_orders)
    assert m.value("trader_orders_submitted_total") == len(filled_orders) + 1  # + the resting one
    assert m.value("trader_stream_messages_total", stream="market_data") == float(
        sim_app.feed.health.messages
    )
    assert m.value("trader_stream_connected", stream="market_data") in (0.0, 1.0)
    assert m.value("trader_broker_round_trip_seconds_count") == e.broker_health.round_trips.count
    assert m.value("trader_broker_round_trip_seconds_count") > 0
    assert m.families["trader_event_loop_lag_seconds"].type == "summary"
    assert m.value("trader_broker_up") == 1.0
    assert m.value("trader_broker_failures_total") == 0.0
    assert m.value("process_resident_memory_bytes") > 0


async def test_metrics_when_risk_gate_refuses_and_trader_halts_then_both_show(
    client: Client, sim_app: EngineApp
) -> None:
    request = OrderRequest(
        client_order_id=make_client_order_id("test", "ZZZZ", sim_app.clock.now(), tag="x"),
        symbol="ZZZZ",
        side=Side.BUY,
        qty=Decimal(1),
        strategy="test",
    )
    result = await sim_app.engine.execution.submit(request)
    assert result.order is None
    await sim_app.commands.halt("tester", "metrics test", keep_positions=True)

    m = await scrape(client)

    rejected = m.value(
        "trader_orders_rejected_total", source="risk", reason=RejectReason.SYMBOL_NOT_ALLOWED
    )
    assert rejected == 1.0
    assert m.value("trader_trading_state", state="HALTED") == 1.0
    assert m.value("trader_trading_state", state="ACTIVE") == 0.0


async def test_metrics_when_alerts_pile_up_then_queue_depth_and_drops_by_kind(
    sim_app: EngineApp,
) -> None:
    lines: list[str] = []
    router = AlertRouter(
        sim_app.bus,
        ConsoleTransport(lines.append),
        sim_app.settings.channels,
        clock=SystemClock(),
        queue_size=5,
        outage_buffer=5,
        coalesce_window_s=0,
    )
    server = WebServer(sim_app, router=router)
    try:
        for i in range(8):  # never started: nothing is delivered, the queue fills and drops
            router.publish(AlertMessage(Channel.TRADES, Severity.INFO, f"fill {i}", f"k{i}"))
        async with TestClient(TestServer(await server.make_app())) as client:
            m = await scrape(client)
    finally:
        await server.stop()
        await router.stop(deadline_s=0.1)

    assert m.value("trader_alerts_queued") == float(router.queued) == 5.0
    dropped = m.by_label("trader_alerts_dropped_total", "kind")
    assert dropped == dict.fromkeys(router.stats.dropped, 1.0)
    assert len(dropped) == 3


async def test_metrics_when_scraped_then_names_and_labels_follow_prometheus_conventions(
    client: Client, sim_app: EngineApp
) -> None:
    await sim_app.engine.execution.submit(
        OrderRequest(
            client_order_id=make_client_order_id("t", "ZZZZ", sim_app.clock.now(), tag="n"),
            symbol="ZZZZ",
            side=Side.BUY,
            qty=Decimal(1),
        )
    )

    m = await scrape(client)

    ours = {n: f for n, f in m.families.items() if not n.startswith(("process_", "python_"))}
    assert ours
    allowed_labels = {"state", "symbol", "side", "source", "reason", "stream", "kind", "mode"}
    allowed_labels |= {"broker", "quantile"}
    for name, family in ours.items():
        assert re.fullmatch(r"trader_[a-z][a-z0-9_]*", name), name
        assert not name.endswith("_total"), name  # the parser strips it from counter names
        for s in family.samples:
            assert set(s.labels) <= allowed_labels, (name, s.labels)
            if family.type == "counter":
                assert s.name.endswith(("_total", "_created")), s.name
    reasons = set(m.by_label("trader_orders_rejected_total", "reason"))
    assert reasons
    assert reasons <= {r.value for r in RejectReason} | {"broker_rejected"}


@pytest.fixture
async def fake_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FakeAlpaca, EngineApp, Client]]:
    async with FakeAlpaca(always_open=True) as fake:
        settings = fake_settings(fake, tmp_path)
        settings = settings.model_copy(
            update={"web": settings.web.model_copy(update={"enabled": True, "token": None})}
        )

        def wiring(*_: Any, **__: Any) -> tuple[Any, Any, Any]:
            clock = SystemClock()
            broker, feed = build_alpaca(settings, clock)
            fast(broker, feed)
            return clock, broker, feed

        monkeypatch.setattr(engine.app, "_build_alpaca", wiring)
        app = await build_app(settings)
        server = WebServer(app)
        await app.start()
        try:
            async with TestClient(TestServer(await server.make_app())) as client:
                yield fake, app, client
        finally:
            await server.stop()
            await app.stop()
            app.feed.close()


async def test_metrics_when_alpaca_then_budget_breaker_trade_stream_and_failures(
    fake_app: tuple[FakeAlpaca, EngineApp, Client],
) -> None:
    fake, app, _ = fake_app
    token = (app.settings.storage.data_dir / "web-token").read_text().strip()
    assert token != TOKEN
    headers = {"Authorization": f"Bearer {token}"}
    fake.push_trade(Tick("AAPL", datetime.now(UTC), Decimal(100), Decimal(10)))
    await seed_position(app, "AAPL", 3)
    client = fake_app[2]

    async def scrape_now() -> Scrape:
        response = await client.get("/metrics", headers=headers)
        assert response.status == 200
        return Scrape(await response.text())

    healthy = await scrape_now()
    fake.knobs.error_rate = 1.0
    await app.engine.refresh_account()
    await wait_for(lambda: app.engine.broker_health.failures > 0, within=10)
    failing = await scrape_now()

    assert healthy.value("trader_info", mode="paper", broker="alpaca") == 1.0
    assert healthy.value("trader_broker_request_budget_limit") == 190.0
    assert 0 < healthy.value("trader_broker_request_budget_available") <= 60_000
    assert healthy.value("trader_broker_requests_total") > 0
    assert healthy.value("trader_broker_circuit_state", state="closed") == 1.0
    assert healthy.value("trader_stream_connected", stream="trade_updates") == 1.0
    assert healthy.value("trader_stream_messages_total", stream="trade_updates") >= 1.0
    assert healthy.value("trader_stream_reconnects_total", stream="trade_updates") == 0.0
    assert healthy.value("trader_stream_last_message_age_seconds", stream="trade_updates") >= 0
    assert healthy.value("trader_broker_failures_total") == 0.0
    assert healthy.value("trader_position_shares", symbol="AAPL") == 3.0
    assert failing.value("trader_broker_failures_total") >= 1.0
    assert failing.value("trader_broker_up") == 0.0
    assert failing.value("trader_broker_requests_total") > healthy.value(
        "trader_broker_requests_total"
    )
