"""Discord command groups (discord.py extensions). Each cog stays thin: parse, check
permission, call the command service, render, send."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import discord
from discord.ext import commands

from bot import catalog
from bot.checks import requires
from bot.render import Reply, send_kwargs

CogT = TypeVar("CogT", bound=commands.Cog)
P = ParamSpec("P")
Callback = Callable[Concatenate[CogT, commands.Context[Any], P], Coroutine[Any, Any, None]]


def registered(name: str) -> Callable[[Callback[CogT, P]], commands.HybridCommand[CogT, P, None]]:
    """The catalog's command ``name`` (``bot.catalog``) as a hybrid command: its description,
    its usage, and the access check it needs."""
    spec = catalog.command(name)
    hybrid = commands.hybrid_command(
        name=spec.name, description=spec.description, usage=spec.usage or None, ignore_extra=False
    )
    check = requires(spec.access)

    def decorate(func: Callback[CogT, P]) -> commands.HybridCommand[CogT, P, None]:
        # discord.py's signature leaves the context type variable out of its return type, so
        # mypy infers ``Never`` for every callback: the types are stated here, once.
        command = cast(Callable[[Callback[CogT, P]], commands.HybridCommand[CogT, P, None]], hybrid)
        return command(check(func))

    return decorate


async def send_replies(
    ctx: commands.Context[Any], replies: Sequence[Reply]
) -> list[discord.Message]:
    """Send each reply as its own message, in order."""
    return [await ctx.send(**send_kwargs(reply)) for reply in replies]
