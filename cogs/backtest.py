"""``!backtest <strategy> [days]``: what a strategy would have done over the last days.

The backtest runs in a process of its own (``engine.backtest.service``); the command keeps
one message up to date with its progress, then answers with the metrics and the equity
chart. Read permission is enough; one backtest at a time per person.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot import backtest_render as show
from bot.checks import caller_of
from cogs import registered, send_replies
from engine.backtest.service import BacktestRefused, BacktestService

if TYPE_CHECKING:
    from bot.bot import TradingBot

log = logging.getLogger(__name__)

Ctx = commands.Context[Any]
DEFAULT_DAYS = 5
EDIT_EVERY_S = 1.5
"""Progress edits at most this often (Discord rate-limits message edits)."""


class BacktestCog(commands.Cog, name="Backtest"):
    def __init__(self, bot: TradingBot) -> None:
        self.bot = bot
        self.service = BacktestService(bot.app.settings)

    async def cog_unload(self) -> None:
        await self.service.stop()

    @registered("backtest")
    async def backtest(self, ctx: Ctx, strategy: str, days: int = DEFAULT_DAYS) -> None:
        owner = str(caller_of(ctx).user_id)
        message: discord.Message | None = None
        loop = asyncio.get_running_loop()
        last = loop.time()

        async def started() -> None:
            nonlocal message
            message = await ctx.send(show.progress_text(strategy, days, 0.0))

        async def progress(done: float) -> None:
            nonlocal last
            if message is not None and loop.time() - last >= EDIT_EVERY_S:
                last = loop.time()
                await _edit(message, show.progress_text(strategy, days, done))

        try:
            outcome = await self.service.run(owner, strategy, days, progress, started=started)
        except BacktestRefused as exc:
            if message is None:  # refused before it started: one line
                await ctx.send(show.refused_text(strategy, str(exc)))
            else:
                await _edit(message, show.failed_text(strategy, str(exc)))
            return
        assert message is not None
        await _edit(message, show.finished_text(outcome))
        try:
            chart: bytes | None = await asyncio.to_thread(outcome.chart.read_bytes)
        except OSError:
            log.exception("reading the backtest chart failed")
            chart = None
        await send_replies(ctx, [show.result_reply(outcome, chart)])


async def _edit(message: discord.Message, content: str) -> None:
    try:
        await message.edit(content=content)
    except discord.HTTPException:
        log.warning("could not edit the backtest progress message", exc_info=True)


async def setup(bot: TradingBot) -> None:
    await bot.add_cog(BacktestCog(bot))
