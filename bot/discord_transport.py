"""Delivers alert messages to Discord channels (a transport for the alert router).

Channel ids come from ``ChannelSettings``. ``send`` raises on any failure (unknown channel,
HTTP error) so the router can retry or fall back; ``is_ready`` is False while the gateway is
down, so the router can hold messages instead of failing them.
"""

from __future__ import annotations

import io
import logging

import discord

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


class DiscordTransport:
    name = "discord"

    def __init__(self, client: discord.Client, channels: ChannelSettings) -> None:
        self._client = client
        self._ids: dict[Channel, int | None] = {
            Channel.HEARTBEAT: channels.heartbeat_id,
            Channel.SYSTEM_ALERTS: channels.system_alerts_id,
            Channel.TRADES: channels.trades_id,
            Channel.REPORTS: channels.reports_id,
        }

    def channel_id(self, channel: Channel) -> int | None:
        return self._ids.get(channel)

    def is_ready(self) -> bool:
        return self._client.is_ready() and not self._client.is_closed()

    def has_channel(self, channel: Channel) -> bool:
        return self._ids.get(channel) is not None

    async def send(self, channel: Channel, message: AlertMessage, mention: str | None) -> None:
        """Post ``message`` (split at 2,000 characters; embed and file on the last part)."""
        target = await self._resolve(channel)
        body = f"{mention} {message.text}" if mention else message.text
        parts = paginate(body.splitlines() or [""], MESSAGE_CHARS)
        allowed = (
            discord.AllowedMentions(users=True, roles=True, everyone=False)
            if mention
            else discord.AllowedMentions.none()
        )
        for part in parts[:-1]:
            await target.send(content=part, allowed_mentions=allowed)
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
