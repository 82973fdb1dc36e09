"""Start-up benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.startup [--positions 2000] [--orders 2000] [--latency-ms 50]

An account on the fake Alpaca server with N positions and M open orders (one resting limit
order per symbol, on the first M symbols), every request answered after the given latency;
the real engine in paper mode (alpaca-py client, the real 190-requests-a-minute budget).
Timed: a first start on that account (empty journal: every position and order adopted), a
restart (the journal knows the book), and a reconcile of the running engine, each until
ready, with the broker requests they made. The floor beside them is the same lists read
through raw alpaca-py at the same latency: positions, every page of open orders and every
page of the day's FILL activities, one request after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from config import Settings, load_settings
from engine.app import build_app
from engine.clock import SystemClock
from engine.domain import OrderType, Side, TimeInForce
from tests.fakes.alpaca import FakeAlpaca
from tests.fakes.alpaca.venue import build_exchange

ORDERS_PAGE = 500
ACTIVITIES_PAGE = 100


def book(positions: int, orders: int) -> FakeAlpaca:
    exchange = build_exchange(
        clock=SystemClock(), starting_cash=Decimal(1_000_000_000), always_open=True
    )
    now = datetime.now(UTC)
    for i in range(max(positions, orders)):
        symbol = f"S{i:04d}"
        exchange.on_price(symbol, Decimal(100 + i % 50), now)
        if i < positions:
            exchange.submit(symbol, Side.BUY, Decimal(10))
        if i < orders:
            exchange.submit(
                symbol, Side.SELL, Decimal(1), OrderType.LIMIT, TimeInForce.GTC, Decimal(10_000)
            )
    return FakeAlpaca(exchange=exchange, always_open=True)


def settings_for(fake: FakeAlpaca, data_dir: Path) -> Settings:
    return load_settings(
        None,
        mode="paper",
        alpaca={
            "api_key": fake.key_id,
            "secret_key": fake.secret_key,
            "trading_url": fake.base_url,
            "data_url": fake.data_url,
            "data_stream_url": fake.data_stream_url,
        },
        strategy={"symbols": ["S0000"]},
        risk={"require_market_open": False},
        storage={"data_dir": data_dir},
    )


async def timed(fake: FakeAlpaca, body: Callable[[], Awaitable[Any]]) -> tuple[float, Counter[str]]:
    mark = len(fake.requests)
    started = time.perf_counter()
    await body()
    seconds = time.perf_counter() - started
    paths = Counter(f"{m} {p}" for m, p in fake.requests[mark:])
    return seconds, paths


def floor(fake: FakeAlpaca) -> tuple[float, int]:
    """The same lists through raw alpaca-py, one request after the other."""
    client = TradingClient(fake.key_id, fake.secret_key, raw_data=True, url_override=fake.base_url)
    requests = 0
    started = time.perf_counter()
    client.get_all_positions()
    requests += 1
    after: datetime | None = None
    while True:
        query = GetOrdersRequest(
            status=QueryOrderStatus.OPEN, limit=ORDERS_PAGE, after=after, direction="asc"
        )
        page = client.get_orders(query)
        requests += 1
        if not isinstance(page, list) or len(page) < ORDERS_PAGE:
            break
        last = max(str(o["submitted_at"]) for o in page)
        after = datetime.fromisoformat(last.replace("Z", "+00:00")) - timedelta(microseconds=1)
    token: str | None = None
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    while True:
        params: dict[str, Any] = {"after": since, "direction": "asc", "page_size": ACTIVITIES_PAGE}
        if token:
            params["page_token"] = token
        page = client.get("/account/activities/FILL", params)
        requests += 1
        if not isinstance(page, list) or len(page) < ACTIVITIES_PAGE:
            break
        token = str(page[-1]["id"])
    return time.perf_counter() - started, requests


def row(name: str, seconds: float, paths: Counter[str]) -> str:
    top = ", ".join(f"{path} x{n}" for path, n in paths.most_common(4))
    return f"| {name} | {seconds:.2f} s | {sum(paths.values())} | {top} |"


async def run(positions: int, orders: int, latency_ms: float) -> None:
    async with book(positions, orders) as fake:
        with tempfile.TemporaryDirectory() as tmp:
            settings = settings_for(fake, Path(tmp))
            fake.knobs.latency_ms = latency_ms
            first = await build_app(settings)
            cold = await timed(fake, first.start)
            adopted = (
                len(first.engine.portfolio.positions()),
                len(first.engine.orders.open_orders()),
            )
            await first.stop()

            again = await build_app(settings)
            warm = await timed(fake, again.start)
            ready = (
                len(again.engine.portfolio.positions()),
                len(again.engine.orders.open_orders()),
            )
            results: list[Any] = []

            async def reconcile_once() -> None:
                # The reconciler the engine's reconcile runs, over the engine's default hour.
                since = datetime.now(UTC) - timedelta(hours=1)
                results.append(await again.engine.control._reconciler.run(since))

            reconcile = await timed(fake, reconcile_once)
            await again.stop()
            floor_s, floor_requests = await asyncio.to_thread(floor, fake)

    print(f"{positions} positions, {orders} open orders, {latency_ms:g} ms per request")
    print(f"first start adopted {adopted[0]} positions and {adopted[1]} open orders;")
    print(f"the restart came up with {ready[0]} and {ready[1]}")
    print("| step | until ready | broker requests | most requested |")
    print("|---|---|---|---|")
    print(row("first start (empty journal)", *cold))
    print(row("restart (journal knows the book)", *warm))
    print(row(f"reconcile while running ({results[0].summary()})", *reconcile))
    print(f"| floor: raw alpaca-py, the same lists | {floor_s:.2f} s | {floor_requests} | |")
    for name, (seconds, _) in (("first start", cold), ("restart", warm), ("reconcile", reconcile)):
        print(f"{name}: {seconds / floor_s:.1f}x the floor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the engine's own warnings are not results
    asyncio.run(run(args.positions, args.orders, args.latency_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
