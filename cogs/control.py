"""Control commands: !halt, !resume, !flatten.

``!halt`` never asks: halting is always safe. ``!flatten`` and ``!resume`` show what will
happen and wait for a confirmation (a button only the invoker can press, or the text
fallback ``!flatten confirm <code>``); ``!flatten now`` skips it for emergencies. The same
command repeated within DISCORD_DEDUPE_WINDOW_S runs once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot import render, text
from bot.catalog import halt_args
from bot.checks import Access, Caller, audit_denial, caller_from, caller_of, decide
from bot.confirm import ConfirmError, ConfirmExpired, ConfirmView, Pending, normalize_code
from bot.dedupe import Key, dedupe_key
from cogs import registered
from engine.clock import Clock
from engine.commands import clean_reason
from engine.errors import CommandError
from engine.flatten import FlattenProgress

if TYPE_CHECKING:
    from bot.bot import TradingBot

log = logging.getLogger(__name__)

Ctx = commands.Context[Any]
Send = Callable[[str], Awaitable[discord.Message]]

PROGRESS_EDIT_INTERVAL_S = 1.0


class ProgressMessage:
    """One message edited as progress arrives: at most one edit per ``interval_s`` (later
    updates wait their turn, only the newest is shown), and ``finish`` always shows the final
    state."""

    def __init__(
        self, message: discord.Message, clock: Clock, interval_s: float = PROGRESS_EDIT_INTERVAL_S
    ) -> None:
        self.message = message
        self._clock = clock
        self._interval_s = interval_s
        self._last_edit: float | None = None
        self._latest: str | None = None
        self._deferred: asyncio.Task[None] | None = None
        self._done = False

    async def update(self, content: str) -> None:
        if self._done:
            return
        self._latest = content
        wait = self._wait_s()
        if wait <= 0:
            await self._edit(content)
        elif self._deferred is None:
            self._deferred = asyncio.get_running_loop().create_task(self._edit_later(wait))

    async def finish(self, content: str) -> None:
        self._done = True
        if self._deferred is not None:
            self._deferred.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deferred
        content = render.truncate(content, render.MESSAGE_CHARS)
        try:
            self.message = await self.message.edit(content=content)
        except discord.HTTPException:
            log.warning("could not edit the progress message; sending the result instead")
            self.message = await self.message.channel.send(content)

    def _wait_s(self) -> float:
        if self._last_edit is None:
            return 0.0
        return self._last_edit + self._interval_s - self._clock.monotonic()

    async def _edit_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._deferred = None
        if not self._done and self._latest is not None:
            await self._edit(self._latest)

    async def _edit(self, content: str) -> None:
        self._last_edit = self._clock.monotonic()
        try:
            self.message = await self.message.edit(content=content)
        except discord.HTTPException as exc:
            log.info("progress edit failed (the final result is still sent): %s", exc)


class ControlCog(commands.Cog, name="Control"):
    def __init__(self, bot: TradingBot) -> None:
        self.bot = bot

    @property
    def prefix(self) -> str:
        return self.bot.discord_settings.command_prefix

    # ---- halt ----------------------------------------------------------------------------

    @registered("halt")
    async def halt(self, ctx: Ctx, *, reason: str = "") -> None:
        keep, why = halt_args(reason)
        caller = caller_of(ctx)
        key = dedupe_key(caller.user_id, "halt", ("keep " if keep else "") + clean_reason(why))
        async with self._once(ctx, key) as first:
            if not first:
                return
            doing = "cancelling orders, keeping positions" if keep else "closing everything"
            progress = ProgressMessage(await ctx.send(f"🔴 Halting: {doing}…"), self.bot.clock)
            try:
                result = await self.bot.app.commands.halt(caller.actor, why, keep_positions=keep)
            except Exception:
                await progress.finish("🔴 Halt did not complete; see the next message.")
                raise
            await progress.finish(text.render_halt(result))

    # ---- resume --------------------------------------------------------------------------

    @registered("resume")
    async def resume(self, ctx: Ctx, action: str = "", code: str = "") -> None:
        action = action.strip().lower()
        if action in ("", "override") and not code:
            await self._resume_preview(ctx, override=action == "override")
        elif action == "confirm" and code:
            await self._confirm_by_text(ctx, "resume", code)
        else:
            raise commands.BadArgument()

    async def _resume_preview(self, ctx: Ctx, override: bool) -> None:
        caller = caller_of(ctx)
        args = "override" if override else ""
        async with self._once(ctx, dedupe_key(caller.user_id, "resume", args)) as first:
            if not first:
                return
            # The command service owns the resume rules: it refuses (and audits) here.
            preview = await self.bot.app.commands.resume_preview(caller.actor, override)
            pending = self.bot.confirmations.issue(caller.user_id, "resume", args)
            embed = render.resume_preview_embed(
                preview, self.prefix, pending.code, self.bot.confirmations.timeout_s, override
            )
            await self._ask(ctx, embed, pending)

    # ---- flatten -------------------------------------------------------------------------

    @registered("flatten")
    async def flatten(self, ctx: Ctx, action: str = "", code: str = "") -> None:
        action = action.strip().lower()
        if not action and not code:
            await self._flatten_preview(ctx)
        elif action == "now" and not code:
            caller = caller_of(ctx)
            async with self._once(ctx, dedupe_key(caller.user_id, "flatten", "now")) as first:
                if not first:
                    return
                preview = await self.bot.app.commands.flatten_preview(caller.actor, audit=False)
                if preview.nothing_to_flatten:
                    await ctx.send(text.NOTHING_TO_FLATTEN)
                    await self.bot.audit_refusal(ctx, text.NOTHING_TO_FLATTEN, verdict="ignored")
                    return
                await ctx.defer()
                await self._run_flatten(caller, ctx.send)
        elif action == "confirm" and code:
            await self._confirm_by_text(ctx, "flatten", code)
        else:
            raise commands.BadArgument()

    async def _flatten_preview(self, ctx: Ctx) -> None:
        caller = caller_of(ctx)
        async with self._once(ctx, dedupe_key(caller.user_id, "flatten")) as first:
            if not first:
                return
            preview = await self.bot.app.commands.flatten_preview(caller.actor)
            if preview.nothing_to_flatten:
                await ctx.send(text.NOTHING_TO_FLATTEN)
                return
            pending = self.bot.confirmations.issue(caller.user_id, "flatten")
            embed = render.flatten_preview_embed(
                preview, self.prefix, pending.code, self.bot.confirmations.timeout_s
            )
            await self._ask(ctx, embed, pending)

    async def _run_flatten(self, caller: Caller, send: Send) -> None:
        progress = ProgressMessage(await send("🧹 Flatten: starting…"), self.bot.clock)

        async def on_progress(p: FlattenProgress) -> None:
            if p.phase != "done":
                await progress.update(text.render_flatten_progress(p))

        try:
            report = await self.bot.app.commands.flatten(caller.actor, on_progress)
        except Exception:
            await progress.finish("🧹 Flatten did not complete; see the next message.")
            raise
        await progress.finish(text.render_flatten(report))

    # ---- once per tap ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _once(self, ctx: Ctx, key: Key) -> AsyncIterator[bool]:
        """``async with self._once(ctx, key) as first:`` — run the body only when ``first``;
        a repeat within the dedupe window gets a short reply and an audit row instead."""
        with self.bot.dedupe.running(key) as refusal:
            if refusal is not None:
                await ctx.send(refusal)
                await self.bot.audit_refusal(ctx, refusal, verdict="ignored")
            yield refusal is None

    # ---- confirmation --------------------------------------------------------------------

    async def _ask(self, ctx: Ctx, embed: discord.Embed, pending: Pending) -> None:
        expired = render.expired_preview_embed(embed, self.prefix, pending.command)
        view = ConfirmView(self.bot.confirmations, pending, self._confirmed_by_button, expired)
        view.message = await ctx.send(embed=embed, view=view)
        self.bot.track_view(view)

    async def _confirm_by_text(self, ctx: Ctx, command: str, code: str) -> None:
        caller = caller_of(ctx)
        key = dedupe_key(caller.user_id, command, f"confirm {code}")
        async with self._once(ctx, key) as first:
            if not first:
                return
            try:
                pending = self.bot.confirmations.redeem(code, caller.user_id, command)
            except ConfirmError as exc:
                if isinstance(exc, ConfirmExpired):
                    await self.bot.expire_view(normalize_code(code))
                await self.bot.audit_refusal(ctx, str(exc))
                raise
            await self.bot.retire_view(pending.code)
            await ctx.defer()
            await self._execute(pending, caller, ctx.send)

    async def _confirmed_by_button(
        self, interaction: discord.Interaction[Any], pending: Pending
    ) -> None:
        caller = caller_from(interaction.user, interaction.channel, interaction.guild)
        command = f"{self.prefix}{pending.command}"
        # Roles may have changed since the preview: decide again.
        decision = decide(self.bot.discord_settings, caller, Access.CONTROL, command)
        if not decision.allowed:
            await audit_denial(
                self.bot.app, caller, pending.command, "confirm (button)", decision.why
            )
            await interaction.followup.send(f"⛔ {decision.why}", ephemeral=True)
            return

        async def send(content: str) -> discord.Message:
            return await interaction.followup.send(content, wait=True)

        await self._execute(pending, caller, send)

    async def _execute(self, pending: Pending, caller: Caller, send: Send) -> None:
        if pending.command == "flatten":
            await self._run_flatten(caller, send)
        elif pending.command == "resume":
            report = await self.bot.app.commands.resume(
                caller.actor, override=pending.args == "override"
            )
            await send(text.render_resume(report))
        else:  # pragma: no cover - only flatten and resume issue codes
            raise CommandError(f"Nothing to confirm for {pending.command}.")


async def setup(bot: TradingBot) -> None:
    await bot.add_cog(ControlCog(bot))
