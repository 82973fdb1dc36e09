"""SIGKILL the simulator at random points while it commits orders, fills and prices to its
state file (one line per commit, only what changed): every restart must find every order it
acknowledged, each fill once, and cash and positions that follow from the fills."""

from __future__ import annotations

import asyncio
import random
import re
import sys
from collections import Counter, defaultdict
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from engine.clock import ReplayClock
from engine.domain import ZERO, money, settlement
from engine.sim.exchange import SimExchange
from tests.integration.sim_state_common import START, STARTING_CASH, make_exchange

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHILD = REPO / "tests" / "integration" / "sim_state_child.py"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def run_and_kill(path: Path, first: int, seed: int, acks: int, tear: int = 0) -> list[str]:
    """Run the child until it has acknowledged ``acks`` orders, SIGKILL it; returns them.
    With ``tear``, the child kills itself half-way through writing that commit instead."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(path),
        str(first),
        str(seed),
        str(tear),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(acked) < acks:
                line = (await proc.stdout.readline()).decode().strip()
                if not line and tear:
                    break
                if not line:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"child exited early: {err.decode()[-2000:]}")
                acked.append(line.removeprefix("ACK "))
    finally:
        with suppress(ProcessLookupError):  # a tearing child is already dead
            proc.kill()  # SIGKILL, wherever it is
        await proc.wait()
    return acked


def check_consistent(exchange: SimExchange, acked: list[str]) -> int:
    """Asserts the restored state; returns the next order number to use."""
    orders = exchange.orders_since(EPOCH)
    executions = exchange.executions_since(EPOCH)
    missing = [cid for cid in acked if exchange.order_by_client_id(cid) is None]
    assert missing == [], "acknowledged orders lost"
    assert len({e.id for e in executions}) == len(executions), "a fill twice"
    filled: dict[str, Decimal] = defaultdict(lambda: ZERO)
    held: dict[str, Decimal] = defaultdict(lambda: ZERO)
    cash = STARTING_CASH
    for e in executions:
        filled[e.order_id] += e.qty
        held[e.symbol] += e.side.sign * e.qty
        cash -= e.side.sign * settlement(e.qty, e.price) + e.commission
    assert {o.id: o.filled_qty for o in orders if o.filled_qty} == dict(filled)
    assert {p.symbol: p.qty for p in exchange.positions()} == {
        s: q for s, q in held.items() if q != ZERO
    }
    assert exchange.account().cash == money(cash)
    numbers = Counter(int(re.sub(r"\D", "", o.client_order_id)) for o in orders)
    assert max(numbers.values()) == 1
    return max(numbers) + 1


async def test_state_when_killed_at_random_points_then_nothing_lost_or_doubled(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sim_account.jsonl"
    rng = random.Random(11)
    next_order = 0
    all_acked: list[str] = []
    last_ts = START
    for round_ in range(4):
        # Round 1 dies inside a write (a torn last line); the next one must append cleanly.
        tear = rng.randint(20, 60) if round_ == 1 else 0
        acks = 10_000 if tear else rng.randint(40, 400)  # a tearing child dies before
        acked = await run_and_kill(path, next_order, round_, acks, tear)
        all_acked += acked
        if tear:
            assert not path.read_bytes().endswith(b"\n")
            assert len(acked) < tear
        restored = make_exchange(path, ReplayClock(START))
        next_order = check_consistent(restored, all_acked)
        assert restored.last_ts >= last_ts  # the market never goes back
        last_ts = restored.last_ts
        del restored
    assert len(all_acked) >= 120
    assert path.read_bytes().endswith(b"\n")
