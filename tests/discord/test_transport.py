"""The Discord transport for the alert router, and control commands echoed to system-alerts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest

from bot.alerts import AlertRouter
from bot.checks import NOT_ALLOWED, AccessDenied
from bot.discord_transport import ChannelUnavailable, DiscordTransport
from bot.messages import AlertMessage, Channel
from config import ChannelSettings
from engine.clock import SystemClock
from engine.events import Severity
from tests.discord.conftest import (
    ALERTS_ID,
    DEFAULT_CHANNELS,
    PNG_MAGIC,
    TRADES_ID,
    Harness,
    attachment_bytes,
    message_text,
)


def transport(h: Harness) -> DiscordTransport:
    return DiscordTransport(h.bot, ChannelSettings(_env_file=None, **DEFAULT_CHANNELS))  # type: ignore[call-arg]


def in_channel(messages: list[discord.Message], channel_id: int) -> list[discord.Message]:
    return [m for m in messages if m.channel.id == channel_id]


def alert(text: str, **kwargs: object) -> AlertMessage:
    return AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, "test", **kwargs)  # type: ignore[arg-type]


def test_has_channel_when_configured_then_true_else_false(harness: Harness) -> None:
    t = transport(harness)

    assert t.has_channel(Channel.SYSTEM_ALERTS)
    assert t.has_channel(Channel.TRADES)
    assert not t.has_channel(Channel.HEARTBEAT)
    assert not t.has_channel(Channel.REPORTS)


def test_is_ready_when_gateway_never_connected_then_false(harness: Harness) -> None:
    assert transport(harness).is_ready() is False  # dpytest never sends READY


async def test_send_when_plain_text_then_posted_to_mapped_channel(harness: Harness) -> None:
    await transport(harness).send(Channel.TRADES, alert("✅ Bought 10 AAPL"), None)

    (message,) = harness.sent()
    assert message.channel.id == TRADES_ID
    assert message.content == "✅ Bought 10 AAPL"
    assert message.embeds == []


async def test_send_when_mention_given_then_prefixed(harness: Harness) -> None:
    await transport(harness).send(Channel.SYSTEM_ALERTS, alert("🔴 HALTED"), "<@&42>")

    assert harness.last_text() == "<@&42> 🔴 HALTED"


async def test_send_when_title_fields_and_attachment_then_compact_embed_and_file(
    harness: Harness,
) -> None:
    message = alert(
        "End of day",
        title="Friday",
        fields={"Day P&L": "+$12.00", "Trades": "4"},
        attachment=PNG_MAGIC + b"rest",
        attachment_name="eod.png",
    )

    await transport(harness).send(Channel.SYSTEM_ALERTS, message, None)

    (sent,) = harness.sent()
    assert sent.content == "End of day"
    embed = sent.embeds[0]
    assert embed.title == "Friday"
    assert [(f.name, f.value) for f in embed.fields] == [("Day P&L", "+$12.00"), ("Trades", "4")]
    (attachment,) = sent.attachments
    assert attachment.filename == "eod.png"
    assert attachment_bytes(attachment) == PNG_MAGIC + b"rest"


async def test_send_when_text_over_2000_chars_then_split_in_order(harness: Harness) -> None:
    lines = [f"{i:03d} " + "x" * 96 for i in range(45)]  # 45 x 100 + newlines = 4544 chars

    await transport(harness).send(Channel.SYSTEM_ALERTS, alert("\n".join(lines)), None)

    sent = harness.sent()
    assert len(sent) == 3
    assert all(len(m.content) <= 2000 for m in sent)
    assert "\n".join(m.content for m in sent).split("\n") == lines


async def test_send_when_channel_not_configured_then_raises(harness: Harness) -> None:
    with pytest.raises(ChannelUnavailable):
        await transport(harness).send(Channel.REPORTS, alert("report"), None)


async def test_send_when_channel_id_unknown_to_discord_then_raises(harness: Harness) -> None:
    missing = ChannelSettings(_env_file=None, system_alerts_id=799999999999999999)  # type: ignore[call-arg]

    with pytest.raises(ChannelUnavailable):
        await DiscordTransport(harness.bot, missing).send(Channel.SYSTEM_ALERTS, alert("x"), None)


# ---- the system-alerts echo, through the real alert router --------------------------------


@pytest.fixture
async def router(harness: Harness) -> AsyncIterator[AlertRouter]:
    harness.bot._ready.set()  # the gateway's READY, which dpytest never sends
    router = AlertRouter(
        harness.app.bus,
        transport(harness),
        ChannelSettings(_env_file=None, **DEFAULT_CHANNELS),  # type: ignore[call-arg]
        clock=SystemClock(),
        coalesce_window_s=0.0,
    )
    await router.start()
    try:
        yield router
    finally:
        await router.stop()


async def test_control_command_when_run_then_echoed_to_system_alerts(
    harness: Harness, router: AlertRouter
) -> None:
    await harness.say("!halt keep echo check")
    await router.stop()  # delivers what is queued

    echoed = [message_text(m) for m in in_channel(harness.sent(), ALERTS_ID)]
    actor = f"discord:{harness.controller.id} (alice)"
    assert f"🛂 !halt keep echo check by {actor}: HALTED; 0 orders cancelled" in echoed
    assert any(text.startswith(f"🔴 HALTED (was ACTIVE) by {actor}") for text in echoed)


async def test_denied_command_when_attempted_then_echoed_as_refused(
    harness: Harness, router: AlertRouter
) -> None:
    with pytest.raises(AccessDenied):
        await harness.say("!flatten now", member=harness.stranger)
    await router.stop()

    echoed = [message_text(m) for m in in_channel(harness.sent(), ALERTS_ID)]
    actor = f"discord:{harness.stranger.id} (mallory)"
    assert echoed == [f"🛂 !flatten now by {actor} refused: denied: {NOT_ALLOWED}"]
