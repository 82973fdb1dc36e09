"""Fill-journaling benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.fills [--fills 2000] [--runs 3]

A burst of N fills (a flatten's closes) through the real journal on a temp file, side by side
in one run:

- journal, one at a time: each fill its own commit, awaited before the next (the old path);
- journal, a burst: the N calls concurrent, sharing group commits;
- fill path, commit first: N fill updates through ``ExecutionManager.on_trade_update`` on the
  simulator, each committed before it is applied (as every fill was before);
- fill path, grouped: the same updates, applied at once and announced when their group
  commits (as shipped for orders whose every execution we know).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from engine.clock import SystemClock
from engine.domain import Fill, Side
from engine.store.journal import Journal
from tests.unit.engine_stubs import build_execution, request

VARIANTS = (
    "journal, one at a time",
    "journal, a burst",
    "fill path, commit first",
    "fill path, grouped",
)


def fills(n: int, tag: str) -> list[Fill]:
    now = datetime.now(UTC)
    return [
        Fill(f"{tag}-{i}", f"c-{i}", f"b-{i}", "AAPL", Side.BUY, Decimal(1), Decimal(10), now)
        for i in range(n)
    ]


async def journal_run(n: int, burst: bool) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        journal = await Journal.open(Path(tmp) / "j.db", SystemClock())
        batch = fills(n, "f")
        started = time.perf_counter()
        if burst:
            await asyncio.gather(*(journal.record_fill(f) for f in batch))
        else:
            for fill in batch:
                await journal.record_fill(fill)
        elapsed = time.perf_counter() - started
        commits = journal.fill_commits
        await journal.close()
    return elapsed, commits


async def fill_path_run(n: int, grouped: bool) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        parts = await build_execution(Path(tmp))
        parts.price("AAPL", 100)
        for i in range(n):
            result = await parts.execution.submit(request(f"o-{i}", qty=1), checked=False)
            assert result.order is not None
            result.order.complete_executions = grouped
        updates = [parts.updates.get_nowait() for _ in range(parts.updates.qsize())]
        before = parts.journal.fill_commits
        started = time.perf_counter()
        for update in updates:
            await parts.execution.on_trade_update(update)
        await parts.execution.drain()
        elapsed = time.perf_counter() - started
        commits = parts.journal.fill_commits - before
        assert parts.portfolio.qty("AAPL") == Decimal(n)
        await parts.close()
    return elapsed, commits


async def one(variant: str, n: int) -> tuple[float, int]:
    if variant.startswith("journal"):
        return await journal_run(n, burst=variant == VARIANTS[1])
    return await fill_path_run(n, grouped=variant == VARIANTS[3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{args.fills} fills")
    print("| path | median (each run) | per fill | commits |")
    print("|---|---|---|---|")
    medians: dict[str, float] = {}
    for variant in VARIANTS:
        runs = [asyncio.run(one(variant, args.fills)) for _ in range(args.runs)]
        med = statistics.median(s for s, _ in runs)
        medians[variant] = med
        each = " / ".join(f"{s:.2f}" for s, _ in runs)
        print(
            f"| {variant} | {med:.2f} s ({each}) | {med / args.fills * 1e6:.0f} µs "
            f"| {runs[0][1]} |",
            flush=True,
        )
    print(f"\nmedians of {args.runs} runs")
    print(f"journal: burst vs one at a time {medians[VARIANTS[0]] / medians[VARIANTS[1]]:.1f}x")
    print(f"fill path: grouped vs commit first {medians[VARIANTS[2]] / medians[VARIANTS[3]]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
