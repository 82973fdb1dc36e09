"""A replay at full speed does not wait for the disk: between minutes it waits for the fills
to be in the book and heard by their strategies, not for their journal commits; only its end
waits for those, so whoever sees it finished sees its fills journaled."""

from __future__ import annotations

import asyncio
from datetime import time
from pathlib import Path

import pytest

from config import Settings
from engine import engine as engine_module
from engine.app import EngineApp, build_app
from engine.domain import Fill
from tests.support.app import sim_settings, wait_for
from tests.support.hears_fills import HearsFills


class HeldCommits:
    """Fill commits run, but their acknowledgements wait until ``release()``."""

    def __init__(self, app: EngineApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.released = asyncio.Event()
        self.held: list[str] = []
        self._waiting: set[asyncio.Task[None]] = set()
        self._commit_fill = app.journal.commit_fill
        monkeypatch.setattr(app.journal, "commit_fill", self._held_commit)

    def release(self) -> None:
        self.released.set()

    def _held_commit(self, fill: Fill) -> asyncio.Future[bool]:
        inner = self._commit_fill(fill)
        outer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.held.append(fill.execution_id)

        async def later() -> None:
            await self.released.wait()
            try:
                outer.set_result(await inner)
            except Exception as exc:
                outer.set_exception(exc)

        task = asyncio.get_running_loop().create_task(later())
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)
        return outer


def _settings(tmp_path: Path) -> Settings:
    return sim_settings(
        tmp_path, until=time(16, 0), strategy={"name": "tests.support.hears_fills:HearsFills"}
    )


async def test_replay_when_fill_commits_are_held_then_strategies_hear_fills_and_it_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await build_app(_settings(tmp_path))
    commits = HeldCommits(app, monkeypatch)
    held = commits.held
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

        commits.release()
        await wait_for(lambda: app.feed.health.finished, within=30)
        unacked_at_finish = app.engine.execution.unacknowledged
        journaled = {f.execution_id for f in await app.journal.load_fills()}
    finally:
        commits.release()
        await app.stop()

    assert set(held[:4]) <= set(heard_while_held)  # heard before their acknowledgement
    assert not finished_while_held  # the end waits for the journal
    assert unacked_while_held == len(held)
    assert unacked_at_finish == 0
    assert journaled == set(held) == set(HearsFills.heard)


async def test_replay_when_too_many_fills_wait_for_the_journal_then_it_waits_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "REPLAY_UNACKED_FILLS", 2)
    app = await build_app(_settings(tmp_path))
    commits = HeldCommits(app, monkeypatch)
    await app.start()
    try:
        await wait_for(lambda: len(commits.held) > 2, within=30)
        await asyncio.sleep(0.3)
        delivered, held = app.feed.health.messages, len(commits.held)
        await asyncio.sleep(0.3)
        still = app.feed.health.messages, len(commits.held)
        commits.release()
        await wait_for(lambda: app.feed.health.finished, within=30)
    finally:
        commits.release()
        await app.stop()

    assert still == (delivered, held)  # stopped at the minute that went past the bound
    assert delivered < app.feed.replay_bars
    assert app.feed.health.messages == app.feed.replay_bars
