"""A ``FakeAlpaca`` holding a book, in a process of its own, driven by the benchmark.

Alpaca is remote: the work of encoding and sending its trade updates is not ours. With the
fake in the benchmark's process, its encoding of a close-all's 6,000 updates (2,000
positions) took the same GIL our engine needs, and the figure measured both. Here the fake
runs in a child process (``python -m tests.bench.remote_fake``); the benchmark drives it
over the child's stdin and stdout, one JSON object a line each way:

- the child first prints its addresses and keys;
- ``{"op": "knobs", ...}`` sets fault knobs (``latency_ms``, ``error_rate``, ``seed``);
- ``{"op": "mark"}`` starts counting requests and served 500s from now;
- ``{"op": "stats"}`` answers ``{"requests", "errors", "positions", "paths"}`` since the
  mark (positions: those the venue still holds; paths: each request's method and path);
- ``{"op": "drop"}`` cuts every trade-updates connection;
- end of input stops the fake and the child.

Both processes put market time at the same instant: the child is given the wall-clock time
at which the benchmark's clock stood at ``--open``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.domain import OrderType, Side, TimeInForce
from engine.sim.exchange import SimExchange
from tests.fakes.alpaca import FakeAlpaca
from tests.fakes.alpaca.venue import build_exchange
from tests.support.app import ShiftedClock

STARTING_CASH = Decimal(100_000_000)


def fill_book(exchange: SimExchange, clock: ShiftedClock, size: int) -> None:
    """``size`` positions of 10 shares, each with a resting GTC sell limit against it."""
    for i in range(size):
        symbol = f"S{i:04d}"
        exchange.on_price(symbol, Decimal(100 + i % 50), clock.now())
        exchange.submit(symbol, Side.BUY, Decimal(10))
        exchange.submit(
            symbol, Side.SELL, Decimal(10), OrderType.LIMIT, TimeInForce.GTC, Decimal(10_000)
        )


class _Served:
    """Counts the 500s the fake serves (its error draws that failed)."""

    def __init__(self, fake: FakeAlpaca) -> None:
        self.count = 0
        plan = fake._faults
        roll = plan.roll_error

        def counted() -> bool:
            failed = roll()
            self.count += failed
            return failed

        plan.roll_error = counted  # type: ignore[method-assign]


async def serve(size: int, open_at: datetime, wall0: float) -> None:
    clock = ShiftedClock(open_at + timedelta(seconds=time.time() - wall0))
    exchange = build_exchange(clock=clock, starting_cash=STARTING_CASH)
    fill_book(exchange, clock, size)
    async with FakeAlpaca(clock=clock, exchange=exchange) as fake:
        served = _Served(fake)
        _write(
            {
                "base_url": fake.base_url,
                "data_url": fake.data_url,
                "data_stream_url": fake.data_stream_url,
                "trade_stream_url": fake.trade_stream_url,
                "key_id": fake.key_id,
                "secret_key": fake.secret_key,
            }
        )
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        requests_mark = errors_mark = 0
        while line := await reader.readline():
            command: dict[str, Any] = json.loads(line)
            op = command.pop("op")
            answer: dict[str, Any] = {}
            if op == "knobs":
                for name, value in command.items():
                    setattr(fake.knobs, name, value)
            elif op == "mark":
                requests_mark, errors_mark = len(fake.requests), served.count
            elif op == "stats":
                answer = {
                    "requests": len(fake.requests) - requests_mark,
                    "errors": served.count - errors_mark,
                    "positions": len(fake.exchange.positions()),
                    "paths": [" ".join(r) for r in fake.requests[requests_mark:]],
                }
            elif op == "drop":
                await fake.drop_trade_streams()
            else:
                answer = {"error": f"unknown op {op!r}"}
            _write(answer)


def _write(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class RemoteFake:
    """The benchmark's end: ``async with RemoteFake(size, clock, open_at, wall0) as fake``."""

    def __init__(self, size: int, open_at: datetime, wall0: float) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "tests.bench.remote_fake",
            "--size",
            str(size),
            "--open",
            open_at.isoformat(),
            "--wall0",
            repr(wall0),
        ]
        self._proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, str] = {}

    async def __aenter__(self) -> RemoteFake:
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self.info = await self._read()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            async with asyncio.timeout(15):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def ask(self, op: str, **fields: object) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        await self._proc.stdin.drain()
        return await self._read()

    async def _read(self) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async with asyncio.timeout(60):
            line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake's process ended")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    @property
    def base_url(self) -> str:
        return self.info["base_url"]

    @property
    def key_id(self) -> str:
        return self.info["key_id"]

    @property
    def secret_key(self) -> str:
        return self.info["secret_key"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--open", type=datetime.fromisoformat, required=True)
    parser.add_argument("--wall0", type=float, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.size, args.open, args.wall0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
