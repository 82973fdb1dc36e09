"""The Discord transport for the alert router, and control commands echoed to system-alerts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import discord
import discord.http
import pytest
from discord.ext.test import backend

from bot.alerts import MAX_SEND_ATTEMPTS, AlertRouter
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
    gateway,
    message_text,
)
from tests.support.app import wait_for


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
    await transport(harness).send(Channel.TRADES, alert("✅ Bought 10 AAPL"), None, "n1")

    (message,) = harness.sent()
    assert message.channel.id == TRADES_ID
    assert message.content == "✅ Bought 10 AAPL"
    assert message.embeds == []


async def test_send_when_mention_given_then_prefixed(harness: Harness) -> None:
    await transport(harness).send(Channel.SYSTEM_ALERTS, alert("🔴 HALTED"), "<@&42>", "n1")

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

    await transport(harness).send(Channel.SYSTEM_ALERTS, message, None, "n1")

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

    await transport(harness).send(Channel.SYSTEM_ALERTS, alert("\n".join(lines)), None, "n1")

    sent = harness.sent()
    assert len(sent) == 3
    assert all(len(m.content) <= 2000 for m in sent)
    assert "\n".join(m.content for m in sent).split("\n") == lines


async def test_send_when_channel_not_configured_then_raises(harness: Harness) -> None:
    with pytest.raises(ChannelUnavailable):
        await transport(harness).send(Channel.REPORTS, alert("report"), None, "n1")


async def test_send_when_channel_id_unknown_to_discord_then_raises(harness: Harness) -> None:
    missing = ChannelSettings(_env_file=None, system_alerts_id=799999999999999999)  # type: ignore[call-arg]

    with pytest.raises(ChannelUnavailable):
        await DiscordTransport(harness.bot, missing).send(
            Channel.SYSTEM_ALERTS, alert("x"), None, "n1"
        )


# ---- the system-alerts echo, through the real alert router --------------------------------


@pytest.fixture
async def router(harness: Harness) -> AsyncIterator[AlertRouter]:
    link = transport(harness)
    await gateway(harness.bot, "connect", link)
    router = AlertRouter(
        harness.app.bus,
        link,
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
    actor = "alice"  # the display name; the audit row keeps the id
    assert f"🛂 !halt keep echo check by {actor}: HALTED; 0 orders cancelled" in echoed
    assert any(text.startswith(f"🔴 HALTED (was ACTIVE) by {actor}") for text in echoed)


async def test_denied_command_when_attempted_then_echoed_as_refused(
    harness: Harness, router: AlertRouter
) -> None:
    with pytest.raises(AccessDenied):
        await harness.say("!flatten now", member=harness.stranger)
    await router.stop()

    echoed = [message_text(m) for m in in_channel(harness.sent(), ALERTS_ID)]
    actor = "mallory"
    assert echoed == [f"🛂 !flatten now by {actor} refused: denied: {NOT_ALLOWED}"]


# ---- gateway outages: discord.py's own event names, Discord's side faked -------------------


class FakeDiscordSide:
    """Wraps dpytest's message endpoint: unreachable while ``down`` (as a dropped network
    is), optionally "times out" after posting (the post lands, the reply is lost), and keeps
    Discord's promise for ``enforce_nonce``: a nonce seen before returns the message already
    posted instead of a second one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.lose_replies = 0
        self.attempts = 0
        self.by_nonce: dict[str, Any] = {}
        original = backend.FakeHttp.send_message

        async def send_message(
            http: backend.FakeHttp, channel_id: int, *, params: discord.http.MultipartParameters
        ) -> Any:
            # dpytest's send_message reads ``channel`` from its caller's frame: keep the name.
            channel = backend._get_higher_locs(1).get("channel")  # noqa: F841
            self.attempts += 1
            if self.down:
                raise OSError(101, "Network is unreachable")
            payload = params.payload or {}
            nonce = payload.get("nonce")
            if payload.get("enforce_nonce") and nonce in self.by_nonce:
                return self.by_nonce[nonce]
            posted = await original(http, channel_id, params=params)
            if nonce is not None:
                self.by_nonce[nonce] = posted
            if self.lose_replies:
                self.lose_replies -= 1
                raise TimeoutError
            return posted

        monkeypatch.setattr(backend.FakeHttp, "send_message", send_message)


@pytest.fixture
def discord_side(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> FakeDiscordSide:
    return FakeDiscordSide(monkeypatch)


def fast_router(h: Harness, link: DiscordTransport) -> AlertRouter:
    return AlertRouter(
        h.app.bus,
        link,
        ChannelSettings(_env_file=None, **DEFAULT_CHANNELS),  # type: ignore[call-arg]
        clock=SystemClock(),
        coalesce_window_s=0.0,
        retry_base_s=0.01,
        link_check_s=0.01,
    )


async def test_is_ready_when_gateway_events_then_follows_them_not_client_is_ready(
    harness: Harness,
) -> None:
    link = transport(harness)
    harness.bot._ready.set()  # what discord.py keeps set through a reconnect

    await gateway(harness.bot, "connect", link)
    assert link.is_ready()
    await gateway(harness.bot, "disconnect", link)
    assert not link.is_ready()
    assert harness.bot.is_ready()
    await gateway(harness.bot, "resumed", link)
    assert link.is_ready()


async def test_gateway_outage_when_alerts_published_then_held_and_posted_once_in_order_after(
    harness: Harness, discord_side: FakeDiscordSide
) -> None:
    harness.bot._ready.set()  # discord.py keeps is_ready() True while it reconnects
    link = transport(harness)
    await gateway(harness.bot, "connect", link)
    router = fast_router(harness, link)
    await router.start()
    router.publish(alert("🟢 up"))
    await wait_for(lambda: len(harness.sent()) == 1)
    try:
        # The network goes first; discord.py notices a heartbeat or two later.
        discord_side.down = True
        texts = [f"✅ Bought {i} AAPL @ $231.97" for i in range(1, 8)]
        for text in texts:
            router.publish(AlertMessage(Channel.TRADES, Severity.INFO, text, "fill"))
        await wait_for(lambda: discord_side.attempts >= MAX_SEND_ATTEMPTS + 2)
        await gateway(harness.bot, "disconnect", link)
        held_from = discord_side.attempts
        await asyncio.sleep(0.1)
        assert discord_side.attempts == held_from  # held, not retried, while disconnected

        discord_side.down = False
        await gateway(harness.bot, "resumed", link)
        await wait_for(lambda: router.queued == 0 and router.stats.sent == 9)
    finally:
        await router.stop()

    sent = harness.sent()
    assert [m.content for m in in_channel(sent, TRADES_ID)] == texts
    (summary,) = [m.content for m in in_channel(sent, ALERTS_ID)]
    assert summary.startswith("📶 Discord was unreachable for ")
    assert summary.endswith("the 7 alerts before this one waited and are late. None lost.")
    assert router.stats.failed == 0


async def test_gateway_outage_when_nothing_to_post_then_one_line_after_it(
    harness: Harness,
) -> None:
    harness.bot._ready.set()
    link = transport(harness)
    await gateway(harness.bot, "connect", link)
    router = fast_router(harness, link)
    await router.start()
    router.publish(alert("🟢 up"))
    await wait_for(lambda: len(harness.sent()) == 1)
    posted: list[discord.Message] = []
    try:
        await gateway(harness.bot, "disconnect", link)
        await asyncio.sleep(0.3)
        assert harness.sent() == []
        await gateway(harness.bot, "resumed", link)
        await wait_for(lambda: bool(posted.extend(harness.sent()) or posted))
        await asyncio.sleep(0.1)  # and only one
        posted.extend(harness.sent())
    finally:
        await router.stop()

    (summary,) = [m.content for m in in_channel(posted, ALERTS_ID)]
    assert len(posted) == 1
    assert re.fullmatch(
        r"📶 Discord was unreachable for \d+s: no alerts were waiting\. None lost\.", summary
    )


async def test_send_when_post_lands_but_reply_times_out_then_retry_shows_it_once(
    harness: Harness, discord_side: FakeDiscordSide
) -> None:
    harness.bot._ready.set()
    link = transport(harness)
    await gateway(harness.bot, "connect", link)
    router = fast_router(harness, link)
    discord_side.lose_replies = 2
    await router.start()
    try:
        router.publish(alert("\n".join(f"line {i:03d} " + "x" * 90 for i in range(30))))
        await wait_for(lambda: router.stats.sent == 1)
    finally:
        await router.stop()

    posted = in_channel(harness.sent(), ALERTS_ID)
    assert len(posted) == 2  # two 2,000-character parts, each posted once
    assert discord_side.attempts >= 4
    assert router.stats.retried == 2
