"""Discord command groups (discord.py extensions). Each cog stays thin: parse, check
permission, call the command service, render, send."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord
from discord.ext import commands

from bot.render import Reply, send_kwargs


async def send_replies(
    ctx: commands.Context[Any], replies: Sequence[Reply]
) -> list[discord.Message]:
    """Send each reply as its own message, in order."""
    return [await ctx.send(**send_kwargs(reply)) for reply in replies]
