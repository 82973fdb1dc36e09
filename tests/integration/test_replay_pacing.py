"""A replay at full speed does not wait for the disk: between minutes it waits for the fills
to be in the book and heard by their strategies, not for their journal commits; only its end
waits for those, so whoever sees it finished sees its fills journaled."""

from __future__ import annotations

import asyncio
from datetime import time
from pathlib import Path

import pytest

from engine.app import build_app
from engine.domain import Fill
from tests.support.app import sim_settings, wait_for
from tests.support.hears_fills import HearsFills


async def test_replay_when_fill_commits_are_held_then_strategies_hear_fills_and_it_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = sim_settings(
        tmp_path, until=time(16, 0), strategy={"name": "tests.support.hears_fills:HearsFills"}
    )
    app = await build_app(settings)
    released = asyncio.Event()
    held: list[str] = []
    waiting: set[asyncio.Task[None]] = set()
    commit_fill = app.journal.commit_fill

    def held_commit(fill: Fill) -> asyncio.Future[bool]:
        """The commit runs; its acknowledgement waits until the test releases it."""
        inner = commit_fill(fill)
        outer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        held.append(fill.execution_id)

        async def later() -> None:
            await released.wait()
            try:
                outer.set_result(await inner)
            except Exception as exc:
                outer.set_exception(exc)

        task = asyncio.get_running_loop().create_task(later())
        waiting.add(task)
        task.add_done_callback(waiting.discard)
        return outer

    monkeypatch.setattr(app.journal, "commit_fill", held_commit)
    HearsFills.heard.clear()
    await app.start()
    try:
        # Fills in several minutes: the replay did not stop at the first one's commit.
        await wait_for(lambda: len(held) >= 4, within=30)
        heard_while_held = list(HearsFills.heard)
        await wait_for(lambda: app.feed.health.messages == app.feed.replay_bars, within=60)
        await asyncio.sleep(0.2)
        finished_while_held = app.feed.health.finished
        unacked_while_held = app.engine.execution.unacknowledged

        released.set()
        await wait_for(lambda: app.feed.health.finished, within=30)
        unacked_at_finish = app.engine.execution.unacknowledged
        journaled = {f.execution_id for f in await app.journal.load_fills()}
    finally:
        released.set()
        await app.stop()

    assert set(held[:4]) <= set(heard_while_held)  # heard before their acknowledgement
    assert not finished_while_held  # the end waits for the journal
    assert unacked_while_held == len(held)
    assert unacked_at_finish == 0
    assert journaled == set(held) == set(HearsFills.heard)
