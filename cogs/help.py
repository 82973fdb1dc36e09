"""!help: only the commands the caller may run, where they are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discord.ext import commands

from bot import render
from bot.checks import CONTROL_OFF, Access, caller_of, control_configured, decide, requires
from cogs import hybrid_command

if TYPE_CHECKING:
    from bot.bot import TradingBot

# (access needed, usage after the prefix, what it does)
ENTRIES: tuple[tuple[Access, str, str], ...] = (
    (Access.READ, "status", "state, equity, day P&L, health"),
    (Access.READ, "positions", "open positions, largest first"),
    (Access.READ, "orders", "open orders with age and status"),
    (Access.READ, "pnl", "today's P&L with an equity chart"),
    (Access.CONTROL, "halt [reason]", "stop trading now, close every position (no confirmation)"),
    (Access.CONTROL, "halt keep [reason]", "stop trading, keep positions"),
    (Access.CONTROL, "resume", "back to ACTIVE (preview, then confirm)"),
    (Access.CONTROL, "resume override", "lift a loss-limit halt (preview, then confirm)"),
    (Access.CONTROL, "flatten", "close every position (preview, then confirm)"),
    (Access.CONTROL, "flatten now", "close every position, no confirmation"),
    (Access.READ, "help", "this list"),
)


class HelpCog(commands.Cog, name="Help"):
    def __init__(self, bot: TradingBot) -> None:
        self.bot = bot

    @hybrid_command(name="help", description="The commands you may run here", ignore_extra=False)
    @requires(Access.READ)
    async def help(self, ctx: commands.Context[Any]) -> None:
        settings = self.bot.discord_settings
        caller = caller_of(ctx)
        allowed = {access: decide(settings, caller, access).allowed for access in Access}
        entries = [(usage, what) for access, usage, what in ENTRIES if allowed[access]]
        note = "" if control_configured(settings) else CONTROL_OFF
        await ctx.send(embed=render.help_embed(entries, settings.command_prefix, note))


async def setup(bot: TradingBot) -> None:
    await bot.add_cog(HelpCog(bot))
