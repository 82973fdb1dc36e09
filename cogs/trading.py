"""Read-only commands: !status, !positions, !orders, !pnl."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from discord.ext import commands

from bot import charts, render
from bot.checks import Access, caller_of, requires
from cogs import hybrid_command, send_replies

if TYPE_CHECKING:
    from bot.bot import TradingBot

log = logging.getLogger(__name__)

Ctx = commands.Context[Any]


class TradingCog(commands.Cog, name="Trading"):
    def __init__(self, bot: TradingBot) -> None:
        self.bot = bot

    @hybrid_command(
        name="status",
        description="Trading state, equity, day P&L, exposure, feed and broker health",
        ignore_extra=False,
    )
    @requires(Access.READ)
    async def status(self, ctx: Ctx) -> None:
        report = await self.bot.app.commands.status(caller_of(ctx).actor)
        await ctx.send(embed=render.status_embed(report))

    @hybrid_command(
        name="positions",
        description="Open positions, largest first, with unrealized P&L",
        ignore_extra=False,
    )
    @requires(Access.READ)
    async def positions(self, ctx: Ctx) -> None:
        positions = await self.bot.app.commands.positions(caller_of(ctx).actor)
        await send_replies(ctx, render.positions_replies(positions))

    @hybrid_command(
        name="orders",
        description="Open orders with age and status",
        ignore_extra=False,
    )
    @requires(Access.READ)
    async def orders(self, ctx: Ctx) -> None:
        orders = await self.bot.app.commands.orders(caller_of(ctx).actor)
        await send_replies(ctx, render.orders_replies(orders))

    @hybrid_command(
        name="pnl",
        description="Today's P&L with an equity chart",
        ignore_extra=False,
    )
    @requires(Access.READ)
    async def pnl(self, ctx: Ctx) -> None:
        await ctx.defer()  # drawing the chart can take a moment; slash commands must answer fast
        report = await self.bot.app.commands.pnl(caller_of(ctx).actor)
        chart: bytes | None
        try:
            chart = await charts.equity_curve_png(report.curve)
        except Exception:
            log.exception("drawing the equity chart failed")
            chart = None
        await send_replies(ctx, render.pnl_replies(report, chart))


async def setup(bot: TradingBot) -> None:
    await bot.add_cog(TradingCog(bot))
