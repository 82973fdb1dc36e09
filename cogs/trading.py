"""Read commands: !status, !positions, !orders, !pnl, !trades, and !audit (control users)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from discord.ext import commands

from bot import charts, render
from bot.checks import caller_of
from cogs import registered, send_replies

if TYPE_CHECKING:
    from bot.bot import TradingBot

log = logging.getLogger(__name__)

Ctx = commands.Context[Any]


class TradingCog(commands.Cog, name="Trading"):
    def __init__(self, bot: TradingBot) -> None:
        self.bot = bot

    @registered("status")
    async def status(self, ctx: Ctx) -> None:
        report = await self.bot.app.commands.status(caller_of(ctx).actor)
        await ctx.send(embed=render.status_embed(report))

    @registered("positions")
    async def positions(self, ctx: Ctx) -> None:
        positions = await self.bot.app.commands.positions(caller_of(ctx).actor)
        await send_replies(ctx, render.positions_replies(positions))

    @registered("orders")
    async def orders(self, ctx: Ctx) -> None:
        orders = await self.bot.app.commands.orders(caller_of(ctx).actor)
        await send_replies(ctx, render.orders_replies(orders))

    @registered("pnl")
    async def pnl(self, ctx: Ctx) -> None:
        await ctx.defer()  # drawing the chart can take a moment; slash commands must answer fast
        report = await self.bot.app.commands.pnl(caller_of(ctx).actor)
        chart: bytes | None
        try:
            chart = await charts.pnl_chart_png(report)
        except Exception:
            log.exception("drawing the equity chart failed")
            chart = None
        await send_replies(ctx, render.pnl_replies(report, chart))

    @registered("trades")
    async def trades(self, ctx: Ctx) -> None:
        fills = await self.bot.app.commands.trades(caller_of(ctx).actor)
        await send_replies(ctx, render.trades_replies(fills))

    @registered("audit")
    async def audit(self, ctx: Ctx, n: int | None = None) -> None:
        rows = await self.bot.app.commands.audit(caller_of(ctx).actor, n)
        await send_replies(ctx, render.audit_replies(rows))


async def setup(bot: TradingBot) -> None:
    await bot.add_cog(TradingCog(bot))
