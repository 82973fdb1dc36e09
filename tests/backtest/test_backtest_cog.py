"""``!backtest`` through the real cog (dpytest) and the console, on a real engine."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.checks import AccessDenied
from bot.console import Console
from engine.backtest.service import BacktestService
from tests.discord.conftest import (
    PNG_MAGIC,
    Harness,
    attachment_bytes,
    keep_text_with_files,
    message_text,
    open_harness,
)
from tests.support.app import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
async def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.chdir(tmp_path)  # dpytest writes the files the bot sends to the cwd
    keep_text_with_files(monkeypatch)
    async with open_harness(tmp_path) as h:
        yield h


@pytest.fixture
def edits(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every message edit the bot makes, as (message id, new content); progress on every
    percent (the cog otherwise edits at most every 1.5 s)."""
    seen: list[tuple[int, str]] = []
    real = discord.Message.edit

    async def edit(self: discord.Message, **kwargs: Any) -> Any:
        seen.append((self.id, kwargs.get("content", "")))
        return await real(self, **kwargs)

    monkeypatch.setattr(discord.Message, "edit", edit)
    # discord.py loads the extension as a module object of its own: patch that one.
    monkeypatch.setattr(sys.modules["cogs.backtest"], "EDIT_EVERY_S", 0.0)
    return seen


def _service(h: Harness) -> BacktestService:
    service = getattr(h.bot.get_cog("Backtest"), "service", None)
    assert isinstance(service, BacktestService)
    return service


async def test_backtest_when_reader_asks_then_one_message_shows_progress_then_the_result(
    harness: Harness, edits: list[tuple[int, str]], tmp_path: Path
) -> None:
    harness.sent()

    await harness.say("!backtest golden_cross 2", member=harness.reader)

    progress, result = harness.sent()
    assert message_text(progress).startswith("⏳ Backtest of golden_cross over the last 2 days")
    assert {message_id for message_id, _ in edits} == {progress.id}  # one message, edited
    steps = [text for _, text in edits if text.startswith("⏳")]
    assert steps
    assert steps[-1].endswith("%")
    assert edits[-1][1] == "✅ Backtest of golden_cross from 2026-11-19 to 2026-11-20: done"
    (embed,) = result.embeds
    assert embed.title == "Backtest: golden_cross"
    fields = {f.name: f.value for f in embed.fields}
    assert {"Total return", "Sharpe", "Max drawdown", "Win rate", "Fees"} <= set(fields)
    assert fields["Trades"].endswith("fills)")
    (chart,) = result.attachments
    assert attachment_bytes(chart).startswith(PNG_MAGIC)
    folders = list((tmp_path / "data" / "backtests").iterdir())
    assert len(folders) == 1
    assert (folders[0] / "summary.json").exists()


async def test_backtest_when_stranger_asks_then_refused_with_nothing_run(
    harness: Harness, tmp_path: Path
) -> None:
    with pytest.raises(AccessDenied):
        await harness.say("!backtest golden_cross 2", member=harness.stranger)

    assert harness.last_text().startswith("⛔")
    assert not (tmp_path / "data" / "backtests").exists()


async def test_backtest_when_one_is_running_then_a_second_by_the_same_person_is_refused(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(harness)
    release = asyncio.Event()
    real_spawn = BacktestService._spawn

    async def held(self: BacktestService, *args: Any) -> Any:
        await release.wait()  # the first backtest waits here until the second was refused
        return await real_spawn(self, *args)

    monkeypatch.setattr(BacktestService, "_spawn", held)
    harness.sent()
    first = asyncio.get_running_loop().create_task(
        harness.say("!backtest golden_cross 2", member=harness.reader)
    )
    await wait_for(lambda: bool(service.running))
    asyncio.get_running_loop().call_later(0.3, release.set)

    await harness.say("!backtest vwap_reversion 1", member=harness.reader)
    await first

    texts = [message_text(m) for m in harness.sent()]
    assert (
        "✋ No backtest of vwap_reversion: your backtest of golden_cross (2 days) is still "
        "running (0% done): one at a time, it answers when it is done"
    ) in texts
    assert any(t.startswith("Backtest: golden_cross") for t in texts)


async def test_backtest_when_the_strategy_is_unknown_then_one_line_and_no_report(
    harness: Harness, edits: list[tuple[int, str]], tmp_path: Path
) -> None:
    harness.sent()

    await harness.say("!backtest gold_cross 2")

    (reply,) = harness.sent()
    assert message_text(reply).startswith("✋ No backtest of gold_cross: unknown strategy")
    assert edits == []
    assert not (tmp_path / "data" / "backtests").exists()


async def test_backtest_when_asked_on_the_console_then_progress_lines_and_the_metrics(
    harness: Harness,
) -> None:
    out = io.StringIO()

    await Console(harness.app, out).handle("!backtest golden_cross 2")

    shown = out.getvalue()
    assert "⏳ Backtest of golden_cross over the last 2 days" in shown
    assert "Backtest of golden_cross, 2026-11-19 to 2026-11-20:" in shown
    assert "Sharpe" in shown
    assert "Report" in shown
