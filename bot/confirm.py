"""Confirmation for commands that must not run by accident (flatten, resume).

``ConfirmationRegistry`` is plain code with an injected clock: it issues short codes bound to
(user, command, args), each valid for one use, by its invoker only, until it expires. The
Discord button view (``ConfirmView``) only delegates to it, so tests cover the rules without
a gateway; the text fallback (``!flatten confirm <code>``) uses the same registry.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import discord

from engine.clock import Clock
from engine.errors import CommandError

log = logging.getLogger(__name__)

# No 0/O, 1/I/L: codes are read on a phone and typed back.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
# Expired codes are remembered this many timeouts, to say "expired" instead of "unknown".
_KEEP_EXPIRED = 10


class ConfirmError(CommandError):
    """A confirmation was refused; ``str()`` says why, fit for the trader."""


class ConfirmExpired(ConfirmError):
    """The code was right but its time is up."""


@dataclass(frozen=True, slots=True)
class Pending:
    code: str
    user_id: int
    command: str
    args: str
    issued_at: float
    expires_at: float
    """Both on the registry clock's monotonic scale."""


class ConfirmationRegistry:
    def __init__(
        self,
        clock: Clock,
        timeout_s: float,
        *,
        new_code: Callable[[], str] | None = None,
    ) -> None:
        self._clock = clock
        self.timeout_s = timeout_s
        self._new_code = new_code or _random_code
        self._pending: dict[str, Pending] = {}

    def issue(self, user_id: int, command: str, args: str = "") -> Pending:
        """A fresh code for ``command``; any earlier code of this user for it stops working."""
        self._purge()
        for code, pending in list(self._pending.items()):
            if pending.user_id == user_id and pending.command == command:
                del self._pending[code]
        code = self._new_code()
        while code in self._pending:
            code = self._new_code()
        now = self._clock.monotonic()
        pending = Pending(code, user_id, command, args, now, now + self.timeout_s)
        self._pending[code] = pending
        return pending

    def check(self, code: str, user_id: int, command: str | None = None) -> Pending:
        """The pending confirmation ``code`` names, if ``user_id`` may confirm it now;
        raises ``ConfirmError`` otherwise. Does not use the code up."""
        key = normalize_code(code)
        pending = self._pending.get(key)
        if pending is None:
            raise ConfirmError(f"No confirmation is waiting with code `{key}`.")
        if pending.user_id != user_id:
            raise ConfirmError("Only the person who asked can confirm this.")
        if command is not None and pending.command != command:
            raise ConfirmError(f"Code `{key}` is for `{pending.command}`, not `{command}`.")
        if self._clock.monotonic() >= pending.expires_at:
            raise ConfirmExpired(
                f"Code `{key}` expired after {self.timeout_s:.0f} s; nothing was done. "
                f"Run `{pending.command}` again for a new one."
            )
        return pending

    def redeem(self, code: str, user_id: int, command: str | None = None) -> Pending:
        """Use the code up and return what it confirms; raises ``ConfirmError`` like
        ``check``. A used code never works again."""
        pending = self.check(code, user_id, command)
        del self._pending[pending.code]
        return pending

    def expire(self, code: str) -> None:
        """End ``code``'s time now (its buttons timed out); it is still known, as expired."""
        key = normalize_code(code)
        pending = self._pending.get(key)
        if pending is not None:
            now = self._clock.monotonic()
            self._pending[key] = replace(pending, expires_at=min(pending.expires_at, now))

    def cancel(self, code: str) -> bool:
        return self._pending.pop(normalize_code(code), None) is not None

    def remaining_s(self, code: str) -> float:
        pending = self._pending.get(normalize_code(code))
        if pending is None:
            return 0.0
        return max(0.0, pending.expires_at - self._clock.monotonic())

    def __len__(self) -> int:
        return len(self._pending)

    def _purge(self) -> None:
        cutoff = self._clock.monotonic() - self.timeout_s * _KEEP_EXPIRED
        for code, pending in list(self._pending.items()):
            if pending.expires_at <= cutoff:
                del self._pending[code]


def normalize_code(code: str) -> str:
    return code.strip().strip("`").upper()


def _random_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


OnConfirm = Callable[[discord.Interaction[Any], Pending], Awaitable[None]]


class ConfirmView(discord.ui.View):
    """Confirm / Cancel buttons for one pending confirmation; only its invoker can press them.

    Times out with the registry. ``message`` must be set after sending so the buttons can be
    disabled, and the preview replaced by ``expired`` (when given), when the time is up.
    """

    def __init__(
        self,
        registry: ConfirmationRegistry,
        pending: Pending,
        on_confirm: OnConfirm,
        expired: discord.Embed | None = None,
    ) -> None:
        super().__init__(timeout=max(1.0, pending.expires_at - pending.issued_at))
        self._registry = registry
        self._pending = pending
        self._on_confirm = on_confirm
        self._expired = expired
        self.message: discord.Message | None = None

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        try:
            self._registry.check(self._pending.code, interaction.user.id)
        except ConfirmError as exc:
            await interaction.response.send_message(f"✋ {exc}", ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger)
    async def confirm(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        pending = self._registry.redeem(self._pending.code, interaction.user.id)
        self._finish()
        await interaction.response.edit_message(view=self)
        await self._on_confirm(interaction, pending)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self._registry.cancel(self._pending.code)
        self._finish()
        await interaction.response.edit_message(content="Cancelled; nothing was done.", view=self)

    @property
    def code(self) -> str:
        return self._pending.code

    async def retire(self) -> None:
        """Disable the buttons (the code was used)."""
        self._finish()
        await self._edit(view=self)

    async def expire(self) -> None:
        """The time is up: buttons off, and the preview says it expired. The code stays known
        to the registry, so typing it now says "expired", not "unknown"."""
        self._finish()
        if self._expired is None:
            await self._edit(view=self)
        else:
            await self._edit(embed=self._expired, view=self)

    async def on_timeout(self) -> None:
        self._registry.expire(self._pending.code)
        await self.expire()

    async def _edit(self, **changes: Any) -> None:
        if self.message is None:
            return
        try:
            self.message = await self.message.edit(**changes)
        except discord.HTTPException:
            log.info("could not update the confirmation message")

    async def on_error(
        self,
        interaction: discord.Interaction[Any],
        error: Exception,
        item: discord.ui.Item[Any],
    ) -> None:
        if isinstance(error, CommandError):
            text = f"✋ {error}"
        else:
            log.error("confirmation button failed for user %s", interaction.user.id, exc_info=error)
            text = "Something went wrong; it is logged."
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)

    def _finish(self) -> None:
        for child in self.children:
            if isinstance(child, discord.ui.Button):
                child.disabled = True
        self.stop()
