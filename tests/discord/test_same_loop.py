"""Bot and engine share one event loop: the engine keeps working while commands run."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

import bot.charts
from tests.discord.conftest import (
    PNG_MAGIC,
    Drawn,
    Harness,
    attachment_bytes,
    keep_text_with_files,
    open_harness,
)
from tests.support.app import wait_for


@pytest.fixture
async def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    """A harness whose replay is still playing (3000x: the morning takes ~3 s) and whose
    loop-lag task ticks every 10 ms."""
    keep_text_with_files(monkeypatch)
    async with open_harness(
        tmp_path,
        sim={"replay_speed": "3000"},
        engine={"loop_lag_interval_s": 0.01},
    ) as h:
        yield h


async def test_command_when_in_flight_then_feed_workers_and_lag_task_keep_running(
    live: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = live.app.engine
    progress: dict[str, int] = {}

    async def chart_that_waits_for_the_engine(
        curve: Sequence[tuple[datetime, Decimal]], title: str = ""
    ) -> bytes:
        # The command cannot finish unless the engine's own tasks run meanwhile.
        feed0, lag0, bars0 = live.app.feed.health.messages, engine.loop_lag.count, bars_seen()
        await wait_for(
            lambda: (
                live.app.feed.health.messages >= feed0 + 6
                and engine.loop_lag.count >= lag0 + 5
                and bars_seen() >= bars0 + 3
            ),
            within=10,
        )
        progress["feed"] = live.app.feed.health.messages - feed0
        progress["lag"] = engine.loop_lag.count - lag0
        return PNG_MAGIC + b"stub"

    def bars_seen() -> int:
        return engine.bars.queue.updates

    monkeypatch.setattr(bot.charts, "equity_curve_png", chart_that_waits_for_the_engine)
    assert not live.app.feed.health.finished, "the replay should still be playing"

    await live.say("!pnl")
    await live.say("!status")

    sent = live.sent()
    assert attachment_bytes(sent[0].attachments[0]) == PNG_MAGIC + b"stub"
    assert sent[1].embeds[0].title.startswith("🟢 ACTIVE")
    assert progress["feed"] >= 6
    assert progress["lag"] >= 5


async def test_pnl_chart_when_drawn_then_off_the_event_loop_thread(
    harness: Harness, drawn_charts: list[Drawn]
) -> None:
    loop_thread = threading.get_ident()

    await harness.say("!pnl")

    (message,) = harness.sent()
    assert attachment_bytes(message.attachments[0]).startswith(PNG_MAGIC)
    assert len(drawn_charts) == 1
    assert drawn_charts[0].thread != loop_thread
