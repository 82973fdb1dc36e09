"""Data per mode and account, through the real start-up on the fake Alpaca: a journal written
for one account refuses another account's keys, and a sim journal refuses a paper run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import engine.app
from engine.app import build_app
from engine.broker.alpaca import build_alpaca
from engine.clock import SystemClock
from engine.journal_owner import JournalOwnerError
from engine.store.journal import Journal
from tests.alpaca.conftest import fake_settings, fast
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import sim_settings, start_app


@pytest.fixture(autouse=True)
def quick_alpaca(monkeypatch: pytest.MonkeyPatch) -> None:
    def wiring(settings: Any, bus: Any) -> tuple[Any, Any, Any]:
        clock = SystemClock()
        broker, feed = build_alpaca(settings, clock)
        fast(broker, feed)
        return clock, broker, feed

    monkeypatch.setattr(engine.app, "_build_alpaca", wiring)


async def meta(data_dir: Path, key: str) -> str | None:
    journal = await Journal.open(data_dir / "trader.sqlite", SystemClock())
    try:
        return await journal.get_meta(key)
    finally:
        await journal.close()


async def test_start_when_journal_belongs_to_another_account_then_refused_untouched(
    tmp_path: Path,
) -> None:
    async with FakeAlpaca(always_open=True, key_id="FIRSTKEYID") as fake:
        app = await build_app(fake_settings(fake, tmp_path))
        await app.start()
        await app.stop()
    data_dir = tmp_path / "data"
    clean_before = await meta(data_dir, "clean_shutdown")

    async with FakeAlpaca(always_open=True, key_id="OTHERKEYID") as other:
        app = await build_app(fake_settings(other, tmp_path))
        try:
            with pytest.raises(JournalOwnerError, match="these keys open account"):
                await app.start()
        finally:
            await app.stop()

    assert clean_before == "true"
    assert await meta(data_dir, "clean_shutdown") == "true"  # the owner saw no crash


async def test_start_when_sim_journal_and_paper_run_then_refused_before_any_broker_call(
    tmp_path: Path,
) -> None:
    sim = await start_app(sim_settings(tmp_path))
    await sim.stop()

    async with FakeAlpaca(always_open=True) as fake:
        app = await build_app(fake_settings(fake, tmp_path))
        try:
            with pytest.raises(JournalOwnerError, match="holds sim trading, and this run is paper"):
                await app.start()
        finally:
            await app.stop()
        assert fake.requests == []
