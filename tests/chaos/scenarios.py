"""The scenarios: each drives real processes through one kind of fault and returns one row."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tests.chaos.procs import Engine, Fake, engine_env
from tests.chaos.views import Tally, broker_view, compare, journal_view

SESSION_MINUTES = 390


@dataclass
class Result:
    scenario: str
    runs: int
    tally: Tally = field(default_factory=Tally)
    timing: str = ""
    checks: list[str] = field(default_factory=list)
    """What failed, one line each; empty: passed."""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.tally.clean and not self.tally.position_diffs and not self.checks

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.checks.append(what)


def speed_for(seconds: float) -> float:
    """A replay speed that makes the fake's trading day last about ``seconds``."""
    return max(60.0, min(1200.0, SESSION_MINUTES * 60 / max(seconds, 1.0)))


async def settle(fake: Fake, data_dir: Path, within: float = 15.0) -> None:
    """Until nothing moves: no open order at the broker, every broker fill journaled, and the
    journal unchanged for half a second."""
    deadline = time.monotonic() + within
    last = -1
    while time.monotonic() < deadline:
        broker = await broker_view(fake)
        journal = journal_view(data_dir)
        if not broker.open_orders and set(broker.fills) <= set(journal.fills):
            if journal.fill_rows == last:
                return
            last = journal.fill_rows
        await asyncio.sleep(0.5)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


# ---- 1. random SIGKILLs while it trades ------------------------------------------------------


async def random_kills(n: int, rng: random.Random, work: Path) -> Result:
    result = Result("SIGKILL while trading", n)
    fake = await Fake.start(speed=speed_for(n * 4.5 + 15))
    data = work / "kills"
    env = engine_env(fake)
    ready: list[float] = []
    try:
        for _ in range(n):
            engine = await _restart_checked(fake, data, env, result, ready)
            await asyncio.sleep(rng.uniform(0.2, 3.0))
            await engine.kill()
            result.check(engine.tracebacks() == 0, "a traceback before the kill")
        engine = await _restart_checked(fake, data, env, result, ready)
        await engine.ask("!halt keep chaos check", lambda s: "HALTED by console" in s)
        await settle(fake, data)
        broker, journal = await broker_view(fake), journal_view(data)
        result.tally.add(compare(journal, broker))
        code = await engine.quit()
        result.check(code == 0, f"exit code {code} after !quit")
        result.check(engine.tracebacks() == 0, "a traceback in the last run")
        result.check(len(broker.fills) > 0, "no fill at all: the strategy never traded")
        result.detail = (
            f"{len(broker.orders)} orders, {len(broker.fills)} fills at the broker; "
            f"restart to ready median {ms(statistics.median(ready))}"
        )
        result.timing = f"ready {ms(statistics.median(ready))} (max {ms(max(ready))})"
    finally:
        await fake.stop()
    return result


async def _restart_checked(
    fake: Fake, data: Path, env: dict[str, str], result: Result, ready: list[float]
) -> Engine:
    """Start the engine on ``data``; once ready its journal holds every execution the broker
    made while it was down (its start-up recovery), and nothing the broker did not make."""
    due = set((await broker_view(fake)).fills)
    engine = await Engine.start(data, env)
    ready.append(engine.ready_s)
    journal, broker = journal_view(data), await broker_view(fake)
    result.tally.add(compare(journal, broker, due=due, cash=False))
    result.check(journal.state != "REDUCING", "came up REDUCING")
    return engine


def money(value: Decimal) -> str:
    return f"${value:,.2f}"
