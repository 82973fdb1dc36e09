"""Flatten benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.flatten [--sizes 10 100 500 1000 2000] [--runs 3]
        [--naive-max 100]

For each book size: N positions, each with an open order against it, on the fake Alpaca
server with 50 ms latency per request; the real engine in paper mode (alpaca-py client, our
trade-update stream, the real 190-requests-a-minute budget). It times `flatten` from the
command reaching the command service to the broker confirming flat, and counts broker
requests. Then the same with 10% of requests failing (HTTP 500; the seed is picked so that the
close-all's first attempt and one of the confirming requests are among them, the errors
served are counted) and the trade-update stream dropped 50 ms in.

Two floors, each measured in the same run on a fresh book of the same size, against the
same fake: what the broker itself needs, close-all, positions and open-orders requests sent
one after the other through raw alpaca-py at the same latency; and the same with a raw
trade-update listener connected (websockets, each frame JSON-decoded and dropped), which
receives the 3 updates per symbol a close-all makes, as ours must. The fake runs in a process
of its own (``tests.bench.remote_fake``): Alpaca is remote, and its work of encoding and
sending updates is not ours. The whole run uses the engine's switch interval
(``engine.app.THREAD_HANDOFF_S``), floors included. The ratios are ours over each floor.
The naive baseline is a loop through the same adapter: cancel each open order, close each
position one by one, poll until flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import websockets
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

import engine.app
from config import load_settings
from engine.app import THREAD_HANDOFF_S, EngineApp, build_app
from engine.broker.alpaca import AlpacaBroker, build_alpaca
from engine.clock import NEW_YORK
from tests.bench.remote_fake import RemoteFake
from tests.support.app import ShiftedClock

OPEN = datetime(2026, 11, 20, 11, 0, tzinfo=NEW_YORK)
LATENCY_MS = 50
ERROR_RATE = 0.10


@dataclass
class Result:
    seconds: float
    requests: int
    flat: bool
    errors: int = 0


def error_seed(size: int) -> int:
    """A seed for the fake's error draws (one per request, in order) that fails the
    close-all's first attempt, lets its retry through and fails one of the two confirming
    requests sent side by side after it."""
    seed = size * 1000
    while True:
        rng = random.Random(seed)
        first, retry, confirm = (rng.random() for _ in range(3))
        if first < ERROR_RATE <= retry and confirm < ERROR_RATE:
            return seed
        seed += 1


async def with_book(size: int, body: Any, *, errors: bool = False) -> Result:
    """A fresh fake with ``size`` positions and open orders in its own process, the engine
    started on it, and ``body(app, fake)`` timed."""
    clock, wall0 = ShiftedClock(OPEN), time.time()
    async with RemoteFake(size, OPEN, wall0) as fake:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                None,
                mode="paper",
                alpaca={
                    "api_key": fake.key_id,
                    "secret_key": fake.secret_key,
                    "trading_url": fake.base_url,
                    "data_url": fake.info["data_url"],
                    "data_stream_url": fake.info["data_stream_url"],
                },
                strategy={"symbols": ["S0000"]},
                storage={"data_dir": Path(tmp)},
            )

            def wiring(*_: Any, **__: Any) -> tuple[Any, Any, Any]:
                broker, feed = build_alpaca(settings, clock)
                return clock, broker, feed

            engine.app._build_alpaca = wiring  # type: ignore[assignment]
            app = await build_app(settings)
            await app.start()
            try:
                knobs: dict[str, object] = {"latency_ms": LATENCY_MS}
                if errors:
                    knobs |= {"seed": error_seed(size), "error_rate": ERROR_RATE}
                await fake.ask("knobs", **knobs)
                await fake.ask("mark")
                started = time.perf_counter()
                flat = await body(app, fake)
                seconds = time.perf_counter() - started
                stats = await fake.ask("stats")
            finally:
                await fake.ask("knobs", error_rate=0.0, latency_ms=0)
                await app.stop()
    return Result(seconds, stats["requests"], flat, stats["errors"])


async def broker_floor(size: int, *, listen: bool = False) -> float:
    """Close-all, positions and open orders through raw alpaca-py on a fresh book of ``size``
    (the same out-of-process fake) at the same latency: what a flatten cannot go below.
    ``listen``: with a raw trade-update listener connected, which receives and decodes every
    update the close-all makes, as ours must."""
    async with RemoteFake(size, OPEN, time.time()) as fake:
        client = TradingClient(fake.key_id, fake.secret_key, url_override=fake.base_url)
        async with contextlib.AsyncExitStack() as stack:
            if listen:
                await stack.enter_async_context(listener(fake))
            await fake.ask("knobs", latency_ms=LATENCY_MS)
            started = time.perf_counter()
            await asyncio.to_thread(client.close_all_positions, cancel_orders=True)
            await asyncio.to_thread(client.get_all_positions)
            await asyncio.to_thread(
                client.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
            )
            return time.perf_counter() - started


@contextlib.asynccontextmanager
async def listener(fake: RemoteFake) -> Any:
    """A raw trade-update client: authenticate, listen, decode every frame and drop it."""
    async with websockets.connect(fake.info["trade_stream_url"]) as ws:
        auth = {"key_id": fake.key_id, "secret_key": fake.secret_key}
        await ws.send(json.dumps({"action": "authenticate", "data": auth}))
        await ws.recv()
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        await ws.recv()

        async def drain() -> None:
            async for frame in ws:
                json.loads(frame)

        reader = asyncio.create_task(drain())
        try:
            yield
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def fast_path(app: EngineApp, fake: RemoteFake) -> bool:
    report = await app.commands.flatten("bench")
    return report.flat and not (await fake.ask("stats"))["positions"]


async def fast_path_with_stream_drop(app: EngineApp, fake: RemoteFake) -> bool:
    async def drop_soon() -> None:
        await asyncio.sleep(0.05)
        await fake.ask("drop")

    dropper = asyncio.create_task(drop_soon())
    report = await app.commands.flatten("bench")
    await dropper
    return report.flat and not (await fake.ask("stats"))["positions"]


async def naive_loop(app: EngineApp, fake: RemoteFake) -> bool:
    broker = app.broker
    assert isinstance(broker, AlpacaBroker)
    calls = broker.calls  # one cancel and one close per item, through the same call path
    for order in await broker.get_open_orders():
        oid = order.broker_order_id
        await calls.get("cancel order", lambda c, oid=oid: c.cancel_order_by_id(oid))
    for position in await broker.get_positions():
        sym = position.symbol
        await calls.call("close position", lambda c, sym=sym: c.close_position(sym))
    for _ in range(100):
        if not await broker.get_positions():
            return True
        await asyncio.sleep(0.1)
    return False


def median(values: list[float]) -> float:
    return statistics.median(values)


def summary(results: list[Result]) -> str:
    seconds = [r.seconds for r in results]
    requests = statistics.median(r.requests for r in results)
    errors = statistics.median(r.errors for r in results)
    flat = "yes" if all(r.flat for r in results) else "NO"
    return (
        f"{median(seconds):.2f} s | {max(seconds):.2f} s | {requests:.0f} | {errors:.0f} | {flat}"
    )


async def main_async(sizes: list[int], runs: int, naive_max: int) -> None:
    # The engine's switch interval from the start, so the floors run under it too.
    sys.setswitchinterval(THREAD_HANDOFF_S)
    print(f"fake Alpaca at {LATENCY_MS} ms per request; {runs} runs per row (median, max)")
    print("| book | path | median | max | broker requests | 500s served | flat | vs floor |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        floor = median([await broker_floor(size) for _ in range(runs)])
        heard = median([await broker_floor(size, listen=True) for _ in range(runs)])
        print(
            f"| {size} | floor: raw alpaca-py close-all + positions + orders | {floor:.2f} s "
            "| | 3 | | | 1.0x |"
        )
        print(
            f"| {size} | floor, with a raw trade-update listener | {heard:.2f} s "
            f"| | 3 | | | {heard / floor:.1f}x |"
        )
        fast = [await with_book(size, fast_path) for _ in range(runs)]
        clean = median([r.seconds for r in fast])
        print(
            f"| {size} | flatten | {summary(fast)} "
            f"| {clean / floor:.1f}x ({clean / heard:.1f}x the listened floor) |"
        )
        rough = [
            await with_book(size, fast_path_with_stream_drop, errors=True) for _ in range(runs)
        ]
        extra = median([r.seconds for r in rough]) - clean
        print(
            f"| {size} | flatten, 10% errors + stream drop | {summary(rough)} "
            f"| {extra:+.2f} s over clean |"
        )
        if size <= naive_max:
            naive = [await with_book(size, naive_loop) for _ in range(1)]
            ratio = naive[0].seconds / clean
            print(f"| {size} | naive loop (1 run) | {summary(naive)} | {ratio:.0f}x ours |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 1000, 2000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--naive-max", type=int, default=100, help="largest book to run the naive loop on"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the engine's own warnings are not results
    asyncio.run(main_async(args.sizes, args.runs, args.naive_max))
    return 0


if __name__ == "__main__":
    sys.exit(main())
