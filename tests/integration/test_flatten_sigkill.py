"""A SIGKILL in the middle of a flatten: the restarted engine finishes it, confirms flat with
the broker, restores the state from before and says so in #system-alerts."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bot.messages import Channel, describe
from engine.app import SIM_STATE_FILE, build_app
from engine.bus import EventBus
from engine.domain import TradingState
from engine.events import Notice
from engine.sim.store import SimStateStore
from tests.support.app import sim_settings, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHILD = REPO / "tests" / "integration" / "flatten_child.py"


async def kill_mid_flatten(tmp_path: Path, where: str) -> int:
    """Run the child until it hangs inside its flatten, SIGKILL it; returns its positions."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(tmp_path),
        where,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    positions = -1
    try:
        async with asyncio.timeout(90):
            while True:
                line = (await proc.stdout.readline()).decode().strip()
                if not line:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"child exited early: {err.decode()[-2000:]}")
                if line.startswith("ACK positions "):
                    positions = int(line.removeprefix("ACK positions "))
                if line == "ACK hanging":
                    break
    finally:
        proc.kill()  # SIGKILL
        await proc.wait()
    return positions


def broker_positions(tmp_path: Path) -> int:
    stored = SimStateStore(tmp_path / "data" / SIM_STATE_FILE).load()
    assert stored is not None
    return sum(1 for p in stored.account["positions"] if p["qty"] not in ("0", 0))


@pytest.mark.parametrize("where", ["before-close", "after-close"])
async def test_restart_when_killed_mid_flatten_then_flatten_finished_and_state_restored(
    tmp_path: Path, where: str
) -> None:
    held = await kill_mid_flatten(tmp_path, where)
    assert held > 0, "the strategy should hold positions by noon"
    assert broker_positions(tmp_path) == (held if where == "before-close" else 0)

    bus = EventBus()
    notices: list[Notice] = []
    bus.subscribe(Notice, notices.append)
    app = await build_app(sim_settings(tmp_path), bus=bus)
    await app.start()
    try:
        restored = app.engine.state.record
        await wait_for(lambda: len([n for n in notices if n.kind == "flatten-recovery"]) == 2, 30)
        record = app.engine.state.record
        positions = app.engine.portfolio.positions()
        at_broker = await app.broker.get_positions()
    finally:
        await app.stop()

    assert (restored.state, restored.cause) == (TradingState.REDUCING, "flatten")
    assert record.state is TradingState.ACTIVE
    assert record.actor == "alice"
    assert record.reason == "interrupted flatten finished"
    assert positions == []
    assert at_broker == []
    started, finished = [n for n in notices if n.kind == "flatten-recovery"]
    assert "asked by alice" in started.text
    assert finished.text.startswith("✅ Interrupted flatten finished: flat")
    assert "ACTIVE again" in finished.text
    assert {m.channel for n in (started, finished) for m in describe(n)} == {Channel.SYSTEM_ALERTS}
