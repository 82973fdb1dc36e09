"""The entry point's engine takes start-up's objects out of the cyclic collector's sight
once it is started (``engine.app.settle_heap``); an app built without asking does not."""

from __future__ import annotations

import gc
from pathlib import Path

from engine.app import build_app
from tests.support.app import sim_settings


async def test_start_when_settle_heap_then_objects_alive_after_start_up_are_frozen(
    tmp_path: Path,
) -> None:
    gc.unfreeze()
    app = await build_app(sim_settings(tmp_path), settle_heap=True)
    try:
        assert gc.get_freeze_count() == 0  # not before start-up is over
        await app.start()
        assert gc.get_freeze_count() > 1000
    finally:
        await app.stop()
        gc.unfreeze()


async def test_start_when_not_asked_then_nothing_frozen(tmp_path: Path) -> None:
    gc.unfreeze()
    app = await build_app(sim_settings(tmp_path))
    try:
        await app.start()
        assert gc.get_freeze_count() == 0
    finally:
        await app.stop()
