"""Alerts land in their configured Discord channels: the real router, jobs and transport over
dpytest, fed by the real engine."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from discord.ext.test import backend

from bot.alerts import AlertRouter
from bot.discord_transport import DiscordTransport
from bot.jobs import TradingJobs
from engine.clock import SystemClock
from tests.discord.conftest import (
    ALERTS_ID,
    DEFAULT_CHANNELS,
    TRADES_ID,
    Harness,
    gateway,
    keep_text_with_files,
    message_text,
    open_harness,
)
from tests.support.app import seed_position

HEARTBEAT_ID = 710000000000000014
REPORTS_ID = 710000000000000015
MENTION_ROLE_ID = 710000000000000022
ALL_CHANNELS: dict[str, Any] = {
    **DEFAULT_CHANNELS,
    "heartbeat_id": HEARTBEAT_ID,
    "reports_id": REPORTS_ID,
    "critical_mention_role_id": MENTION_ROLE_ID,
}


@dataclass
class Wired:
    harness: Harness
    router: AlertRouter
    jobs: TradingJobs

    def by_channel(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for message in self.harness.sent():
            found.setdefault(message.channel.id, []).append(message_text(message))
        return found


async def wire(h: Harness) -> Wired:
    channels = h.app.settings.channels
    transport = DiscordTransport(h.bot, channels)
    await gateway(h.bot, "connect", transport)
    router = AlertRouter(h.app.bus, transport, channels, clock=SystemClock(), coalesce_window_s=0.0)
    await router.start()
    jobs = TradingJobs(
        h.app,
        h.app.settings.schedule,
        router,
        clock=h.app.clock,  # replay time: 12:00 New York on a trading day
        chart=None,
        announce=False,
    )
    return Wired(h, router, jobs)


@pytest.fixture
async def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Wired]:
    keep_text_with_files(monkeypatch)
    async with open_harness(tmp_path, channels=ALL_CHANNELS) as h:
        backend.make_text_channel("heartbeat", h.guild, id_num=HEARTBEAT_ID)
        backend.make_text_channel("reports", h.guild, id_num=REPORTS_ID)
        h.sent()  # start from a clean slate
        w = await wire(h)
        try:
            yield w
        finally:
            await w.router.stop()


async def test_alerts_when_engine_and_jobs_speak_then_each_lands_in_its_channel(
    wired: Wired,
) -> None:
    h = wired.harness
    await seed_position(h.app, "MSFT", 3)  # a fill -> #trades
    await wired.jobs.heartbeat()  # -> #heartbeat
    await wired.jobs.market_open()  # -> #reports
    await h.app.commands.halt("test", "channel check", keep_positions=True)  # -> #system-alerts
    await wired.router.stop()  # deliver everything queued

    sent = wired.by_channel()
    assert any("✅ Bought 3 MSFT" in text for text in sent[TRADES_ID])
    assert len(sent[HEARTBEAT_ID]) == 1
    assert "Equity" in sent[HEARTBEAT_ID][0] or "equity" in sent[HEARTBEAT_ID][0]
    assert len(sent[REPORTS_ID]) == 1
    halts = [t for t in sent[ALERTS_ID] if "🔴 HALTED (was ACTIVE) by test: channel check" in t]
    assert len(halts) == 1


async def test_mentions_when_alerts_sent_then_only_critical_ones_ping_the_role(
    wired: Wired,
) -> None:
    h = wired.harness
    await seed_position(h.app, "MSFT", 3)
    await wired.jobs.heartbeat()
    await h.app.commands.halt("test", "mention check", keep_positions=True)
    await wired.router.stop()

    role = f"<@&{MENTION_ROLE_ID}>"
    sent = wired.by_channel()
    pinged = [text for texts in sent.values() for text in texts if role in text]
    assert len(pinged) == 1
    assert "🔴 HALTED" in pinged[0]
    assert all(role not in text for text in sent[TRADES_ID] + sent[HEARTBEAT_ID])


async def test_channel_when_not_configured_then_falls_back_to_system_alerts_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keep_text_with_files(monkeypatch)
    async with open_harness(tmp_path, channels=DEFAULT_CHANNELS) as h:  # no heartbeat/reports
        h.sent()
        w = await wire(h)
        with caplog.at_level(logging.WARNING, logger="bot.alerts"):
            await w.jobs.heartbeat()
            await w.jobs.heartbeat()
            await w.router.stop()
        sent = w.by_channel()

    texts = sent[ALERTS_ID]
    warnings = [t for t in texts if "No #heartbeat channel is configured" in t]
    heartbeats = [t for t in texts if t.startswith("💓")]
    assert len(warnings) == 1, "one warning per missing channel, not one per message"
    assert len(heartbeats) == 2, "both heartbeats fall back to #system-alerts"
    assert len([r for r in caplog.records if "heartbeat" in r.getMessage()]) <= 1
