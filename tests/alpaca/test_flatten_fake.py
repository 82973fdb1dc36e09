"""Flatten's hard cases, with the whole engine in paper mode against the fake Alpaca server:
fewest requests, open orders, partial fills, shorts, fractions, a closed market, a symbol
the broker refuses, a stream drop and request errors mid-flatten, a second flatten, and no
strategy orders while it runs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import engine.app
from bot.text import render_flatten
from engine.app import EngineApp, build_app
from engine.broker.alpaca import build_alpaca
from engine.clock import NEW_YORK
from engine.domain import Bar, OrderRequest, OrderType, Side, Tick, TimeInForce
from engine.orders import make_client_order_id
from engine.strategy import NoParams, Signal, Strategy, StrategyHost, StrategySpec
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.fakes.alpaca.venue import build_exchange
from tests.support.app import ShiftedClock, seed_position, wait_for

D = Decimal
OPEN = datetime(2026, 11, 20, 11, 0, tzinfo=NEW_YORK)  # a Friday, mid-session
PRICES = {"AAPL": D("230.00"), "MSFT": D("420.00"), "SPY": D("590.00")}
FLATTEN_PATHS = ("/v2/positions", "/v2/orders")


@dataclass
class Env:
    fake: FakeAlpaca
    app: EngineApp
    clock: ShiftedClock

    def requests_since(self, mark: int) -> Counter[tuple[str, str]]:
        """Broker requests a flatten made (background account refreshes left out)."""
        return Counter(r for r in self.fake.requests[mark:] if r[1].startswith(FLATTEN_PATHS))

    async def rest_order(self, symbol: str, side: Side, qty: str, limit: str) -> None:
        """A resting limit order against a position, far from the market."""
        request = OrderRequest(
            client_order_id=make_client_order_id("test", symbol, self.clock.now(), tag="rest"),
            symbol=symbol,
            side=side,
            qty=D(qty),
            order_type=OrderType.LIMIT,
            limit_price=D(limit),
            time_in_force=TimeInForce.GTC,
            strategy="test",
        )
        result = await self.app.engine.execution.submit(request, checked=False)
        assert result.order is not None
        await wait_for(lambda: result.order is not None and result.order.broker_order_id != "")


@asynccontextmanager
async def flatten_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    max_fill_qty: Decimal = Decimal(0),
    **alpaca: Any,
) -> AsyncIterator[Env]:
    clock = ShiftedClock(OPEN)
    exchange = build_exchange(clock=clock, max_fill_qty=max_fill_qty)
    async with FakeAlpaca(clock=clock, exchange=exchange) as fake:
        settings = fake_settings(fake, tmp_path, **alpaca)

        def wiring(*_: Any, **__: Any) -> tuple[Any, Any, Any]:
            broker, feed = build_alpaca(settings, clock)
            fast(broker, feed)
            return clock, broker, feed

        monkeypatch.setattr(engine.app, "_build_alpaca", wiring)
        for symbol, price in PRICES.items():
            fake.push_trade(Tick(symbol, clock.now(), price, D(100)))
        app = await build_app(settings)
        await app.start()
        try:
            yield Env(fake, app, clock)
        finally:
            await app.stop()


async def test_flatten_when_book_has_longs_shorts_fractions_and_open_orders_then_three_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch) as env:
        await seed_position(env.app, "AAPL", 10)
        await seed_position(env.app, "MSFT", -5)
        await seed_position(env.app, "SPY", "0.5")
        await env.rest_order("AAPL", Side.SELL, "10", "999")
        await env.rest_order("MSFT", Side.BUY, "5", "1")
        mark = len(env.fake.requests)

        report = await env.app.commands.flatten("tester")

        requests = env.requests_since(mark)
        venue_positions = env.fake.exchange.positions()
        venue_open = env.fake.exchange.open_orders()

    assert report.flat, render_flatten(report)
    assert {o.symbol: o.status for o in report.outcomes} == dict.fromkeys(PRICES, "closed")
    assert venue_positions == []
    assert venue_open == []
    # one close-all (which also cancels), one positions check, one open-orders check
    assert requests == Counter(
        {("DELETE", "/v2/positions"): 1, ("GET", "/v2/positions"): 1, ("GET", "/v2/orders"): 1}
    )


async def test_flatten_when_order_partially_filled_then_rest_cancelled_and_fill_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch, max_fill_qty=D(4)) as env:
        request = OrderRequest(
            client_order_id=make_client_order_id("test", "AAPL", env.clock.now(), tag="part"),
            symbol="AAPL",
            side=Side.BUY,
            qty=D(10),
            strategy="test",
        )
        result = await env.app.engine.execution.submit(request, checked=False)
        await wait_for(lambda: env.app.engine.portfolio.qty("AAPL") == D(4))
        assert result.order is not None
        assert result.order.remaining_qty == D(6)

        report = await env.app.commands.flatten("tester")
        await wait_for(lambda: result.order is not None and not result.order.is_open)

        venue_order = env.fake.exchange.order_by_client_id(request.client_order_id)
        venue_positions = env.fake.exchange.positions()

    assert report.flat, render_flatten(report)
    assert venue_positions == []
    assert venue_order is not None
    assert venue_order.status == "canceled"
    assert venue_order.filled_qty == D(4)


async def test_flatten_when_market_closed_then_close_orders_queue_and_report_says_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch) as env:
        await seed_position(env.app, "AAPL", 10)
        await seed_position(env.app, "MSFT", -5)
        env.clock.jump(6 * 3600)  # 17:00: after the close
        await env.app.engine.market.refresh()

        report = await env.app.commands.flatten("tester")

        queued = {o.symbol: o.status for o in env.fake.exchange.open_orders()}
        venue_positions = {p.symbol for p in env.fake.exchange.positions()}

    assert not report.flat
    assert not report.market_open
    assert report.next_open == datetime(2026, 11, 23, 9, 30, tzinfo=NEW_YORK)  # Monday
    assert {o.symbol: o.status for o in report.outcomes} == {"AAPL": "queued", "MSFT": "queued"}
    assert queued == {"AAPL": "accepted", "MSFT": "accepted"}
    assert venue_positions == {"AAPL", "MSFT"}
    text = render_flatten(report)
    assert "Market closed" in text
    assert text.lower().count("market") == 1, text  # said once, not per symbol and again
    assert "Mon Nov 23 09:30 ET" in text


async def test_flatten_when_broker_refuses_one_symbol_then_rest_closed_and_refusal_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch) as env:
        for symbol, qty in (("AAPL", 10), ("MSFT", -5), ("SPY", 3)):
            await seed_position(env.app, symbol, qty)
        env.fake.knobs.untradable = {"MSFT"}

        report = await env.app.commands.flatten("tester")

        venue_positions = {p.symbol: p.qty for p in env.fake.exchange.positions()}

    assert not report.flat
    outcomes = {o.symbol: o for o in report.outcomes}
    assert outcomes["AAPL"].status == "closed"
    assert outcomes["SPY"].status == "closed"
    assert outcomes["MSFT"].status == "failed"
    assert outcomes["MSFT"].qty_left == D(-5)
    assert "not tradable" in outcomes["MSFT"].detail
    assert report.elapsed_s < 10, "a refused symbol must not hold the others to the deadline"
    assert venue_positions == {"MSFT": D(-5)}
    assert "MSFT -5 failed" in render_flatten(report)


async def test_flatten_when_trade_stream_drops_mid_flatten_then_flat_and_no_fill_lost_or_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch) as env:
        for symbol, qty in (("AAPL", 10), ("MSFT", -5), ("SPY", 3)):
            await seed_position(env.app, symbol, qty)
        env.fake.knobs.latency_ms = 30
        await env.fake.drop_trade_streams()  # the fills of the close orders go unheard

        report = await env.app.commands.flatten("tester")
        # the stream comes back and recovery replays what it missed
        await wait_for(lambda: env.fake.connected_trade_streams() == 1)
        await wait_for(lambda: not env.app.engine.portfolio.positions())
        fills = await env.app.journal.load_fills()
        venue_fills = env.fake.exchange.executions_since(OPEN - timedelta(days=1))

    assert report.flat, render_flatten(report)
    assert sorted(f.execution_id for f in fills) == sorted(
        f"{e.order_id}:{e.cum_qty}" for e in venue_fills
    )


async def test_flatten_when_requests_fail_mid_flatten_then_retried_and_flat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch) as env:
        for symbol, qty in (("AAPL", 10), ("MSFT", -5), ("SPY", 3)):
            await seed_position(env.app, symbol, qty)
        env.fake.knobs.seed = 3
        env.fake.knobs.error_rate = 0.4

        report = await env.app.commands.flatten("tester")

        venue_positions = env.fake.exchange.positions()

    assert report.flat, render_flatten(report)
    assert venue_positions == []


async def test_flatten_when_second_flatten_arrives_while_running_then_it_joins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch) as env:
        await seed_position(env.app, "AAPL", 10)
        env.fake.knobs.latency_ms = 150
        mark = len(env.fake.requests)

        first, second = await asyncio.gather(
            env.app.commands.flatten("alice"), env.app.commands.flatten("bob")
        )

        close_alls = env.requests_since(mark)[("DELETE", "/v2/positions")]

    assert first.flat
    assert second.flat
    assert sorted([first.joined, second.joined]) == [False, True]
    assert close_alls == 1


class AlwaysSell(Strategy[NoParams]):
    """Signals a one-share sale on every bar. Selling from a long only reduces, so the
    REDUCING gate lets it through: only the flatten itself can stop it racing the close order
    (and turning the position short)."""

    name = "always_sell"

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        return Signal(Side.SELL, "test", qty=D(1))


async def test_flatten_when_running_then_strategy_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with flatten_env(tmp_path, monkeypatch) as env:
        await seed_position(env.app, "AAPL", 10)
        spec = StrategySpec("always_sell", AlwaysSell, NoParams(), ("AAPL",), D(1), False)
        env.app.engine.bars.host = StrategyHost([spec])  # in place of the configured one
        env.fake.knobs.latency_ms = 200
        mark = len(env.fake.requests)
        flatten = asyncio.create_task(env.app.commands.flatten("tester"))
        await wait_for(lambda: env.app.engine.flattener.running)

        start = env.clock.now().replace(second=0, microsecond=0)
        for minute in range(5):  # bars keep coming while the flatten works
            ts = start + timedelta(minutes=minute + 1)
            price = PRICES["AAPL"]
            env.app.engine.on_bar(Bar("AAPL", ts, price, price, price, price, D(100)))
            await asyncio.sleep(0.05)
        report = await flatten
        strategy_orders = [r for r in env.fake.requests[mark:] if r == ("POST", "/v2/orders")]

    assert report.flat
    assert strategy_orders == []
