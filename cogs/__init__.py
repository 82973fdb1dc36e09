"""Discord command groups (discord.py extensions). Each cog stays thin: parse, check
permission, call the command service, render, send."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import discord
from discord.ext import commands

from bot.render import Reply, send_kwargs

CogT = TypeVar("CogT", bound=commands.Cog)
P = ParamSpec("P")
Callback = Callable[Concatenate[CogT, commands.Context[Any], P], Coroutine[Any, Any, None]]


def hybrid_command(
    name: str, **attrs: Any
) -> Callable[[Callback[CogT, P]], commands.HybridCommand[CogT, P, None]]:
    """``commands.hybrid_command`` with a signature mypy can solve: discord.py's leaves the
    context type variable out of its return type, so mypy infers ``Never`` for every callback."""
    decorator = commands.hybrid_command(name=name, **attrs)
    return cast(Callable[[Callback[CogT, P]], commands.HybridCommand[CogT, P, None]], decorator)


async def send_replies(
    ctx: commands.Context[Any], replies: Sequence[Reply]
) -> list[discord.Message]:
    """Send each reply as its own message, in order."""
    return [await ctx.send(**send_kwargs(reply)) for reply in replies]
