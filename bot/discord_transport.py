"""Delivers alert messages to Discord channels (a transport for the alert router).

Channel ids come from ``ChannelSettings``. ``send`` raises on any failure so the router can
retry or fall back: ``SendUnavailable`` when Discord cannot be reached (network, timeout,
5xx), so the router holds the message instead of using up its attempts.

``is_ready`` follows the gateway's own events, not ``Client.is_ready()``: discord.py keeps that
True while it reconnects (``_ready`` is cleared only by ``close()``), so an outage would look
like a run of failed posts. ``on_connect`` (a session was identified: READY) and
``on_resumed`` mean connected, ``on_disconnect`` (any loss of the websocket) means not.

Every post carries the router's nonce for the message (``.<part>`` per 2,000-character part);
discord.py sends it with ``enforce_nonce``, so Discord answers a repeat with the message it
already posted instead of posting it twice (docs/library-facts.md).
"""

from __future__ import annotations

import asyncio
import io
import logging

import aiohttp
import discord
from discord.ext import commands

from bot.alerts import SendUnavailable
from bot.messages import AlertMessage, Channel
from bot.render import (
    FIELD_NAME_CHARS,
    FIELD_VALUE_CHARS,
    FIELDS_PER_EMBED,
    MESSAGE_CHARS,
    TITLE_CHARS,
    paginate,
    truncate,
)
from config import ChannelSettings
from engine.events import Severity

log = logging.getLogger(__name__)

SEVERITY_COLOUR = {
    Severity.INFO: discord.Colour.blurple(),
    Severity.WARNING: discord.Colour.gold(),
    Severity.CRITICAL: discord.Colour.red(),
}


class ChannelUnavailable(Exception):
    """The configured channel is not set, not visible to the bot, or not a text channel."""


# What a post raises when Discord cannot be reached: retrying later can succeed.
UNREACHABLE = (OSError, TimeoutError, aiohttp.ClientError, discord.DiscordServerError)
# aiohttp's own limit is five minutes; an alert that long in flight holds up every other one.
POST_TIMEOUT_S = 20.0


class DiscordTransport:
    name = "discord"

    def __init__(
        self,
        client: commands.Bot,
        channels: ChannelSettings,
        *,
        post_timeout_s: float = POST_TIMEOUT_S,
    ) -> None:
        self._client = client
        self._post_timeout_s = post_timeout_s
        self._connected = client.is_ready()
        client.add_listener(self._gateway_up, "on_connect")
        client.add_listener(self._gateway_up, "on_resumed")
        client.add_listener(self._gateway_down, "on_disconnect")
        self._ids: dict[Channel, int | None] = {
            Channel.HEARTBEAT: channels.heartbeat_id,
            Channel.SYSTEM_ALERTS: channels.system_alerts_id,
            Channel.TRADES: channels.trades_id,
            Channel.REPORTS: channels.reports_id,
        }

    def channel_id(self, channel: Channel) -> int | None:
        return self._ids.get(channel)

    def is_ready(self) -> bool:
        return self._connected and not self._client.is_closed()

    async def _gateway_up(self) -> None:
        if not self._connected:
            log.info("Discord gateway connected: alerts flow")
        self._connected = True

    async def _gateway_down(self) -> None:
        if self._connected:
            log.warning("Discord gateway disconnected: alerts wait until it is back")
        self._connected = False

    def has_channel(self, channel: Channel) -> bool:
        return self._ids.get(channel) is not None

    async def send(
        self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str
    ) -> None:
        """Post ``message`` (split at 2,000 characters; embed and file on the last part)."""
        try:
            async with asyncio.timeout(self._post_timeout_s):
                await self._post(channel, message, mention, nonce)
        except UNREACHABLE as exc:
            raise SendUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _post(
        self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str
    ) -> None:
        target = await self._resolve(channel)
        body = f"{mention} {message.text}" if mention else message.text
        parts = paginate(body.splitlines() or [""], MESSAGE_CHARS)
        allowed = (
            discord.AllowedMentions(users=True, roles=True, everyone=False)
            if mention
            else discord.AllowedMentions.none()
        )
        for i, part in enumerate(parts[:-1]):
            await target.send(content=part, allowed_mentions=allowed, nonce=f"{nonce}.{i}")
        embed = _embed(message)
        files = []
        if message.attachment is not None:
            name = message.attachment_name or "attachment"
            files.append(discord.File(io.BytesIO(message.attachment), filename=name))
        await target.send(
            content=parts[-1],
            allowed_mentions=allowed,
            embeds=[embed] if embed is not None else [],
            files=files,
            nonce=f"{nonce}.{len(parts) - 1}",
        )

    async def _resolve(self, channel: Channel) -> discord.abc.Messageable:
        channel_id = self._ids.get(channel)
        if channel_id is None:
            raise ChannelUnavailable(f"no channel id is configured for #{channel.value}")
        found = self._client.get_channel(channel_id)
        if found is None:
            try:
                found = await self._client.fetch_channel(channel_id)
            except discord.NotFound:
                raise ChannelUnavailable(
                    f"channel {channel_id} (#{channel.value}) does not exist or is not visible"
                ) from None
        if not isinstance(found, discord.abc.Messageable):
            raise ChannelUnavailable(
                f"channel {channel_id} (#{channel.value}) is not a text channel"
            )
        return found


def _embed(message: AlertMessage) -> discord.Embed | None:
    if not message.title and not message.fields:
        return None
    embed = discord.Embed(
        title=truncate(message.title, TITLE_CHARS) if message.title else None,
        colour=SEVERITY_COLOUR.get(message.severity, discord.Colour.blurple()),
    )
    for name, value in list(message.fields.items())[:FIELDS_PER_EMBED]:
        embed.add_field(
            name=truncate(name, FIELD_NAME_CHARS),
            value=truncate(value or "-", FIELD_VALUE_CHARS),
            inline=True,
        )
    return embed
