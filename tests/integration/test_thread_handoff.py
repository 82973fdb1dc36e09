"""A started engine shortens the interpreter's switch interval (``engine.app.THREAD_HANDOFF_S``):
its requests and journal transactions run on threads that need the GIL back at every step,
and at Python's 5 ms a busy loop made each of them wait that long (tests/bench/flatten.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.app import THREAD_HANDOFF_S, build_app
from tests.support.app import sim_settings


async def test_start_when_engine_started_then_threads_get_the_gil_back_within_the_handoff(
    tmp_path: Path,
) -> None:
    default = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    app = await build_app(sim_settings(tmp_path))
    try:
        await app.start()
        assert sys.getswitchinterval() == pytest.approx(THREAD_HANDOFF_S)
        assert THREAD_HANDOFF_S < 0.005
    finally:
        await app.stop()
        sys.setswitchinterval(default)
