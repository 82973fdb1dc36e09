"""!help: only the commands the caller may run, where they are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discord.ext import commands

from bot import catalog, render
from bot.checks import CONTROL_OFF, Access, caller_of, control_configured, decide
from cogs import registered

if TYPE_CHECKING:
    from bot.bot import TradingBot


class HelpCog(commands.Cog, name="Help"):
    def __init__(self, bot: TradingBot) -> None:
        self.bot = bot

    @registered("help")
    async def help(self, ctx: commands.Context[Any]) -> None:
        settings = self.bot.discord_settings
        caller = caller_of(ctx)
        allowed = frozenset(a for a in Access if decide(settings, caller, a).allowed)
        entries = catalog.help_lines(catalog.Surface.DISCORD, allowed)
        note = "" if control_configured(settings) else CONTROL_OFF
        await ctx.send(embed=render.help_embed(entries, settings.command_prefix, note))


async def setup(bot: TradingBot) -> None:
    await bot.add_cog(HelpCog(bot))
