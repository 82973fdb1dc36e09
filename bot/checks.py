"""Who may run what, and where.

The rules are plain functions over plain data (``Caller`` + ``DiscordSettings``) so tests can
cover every case without Discord; ``requires`` turns them into a discord.py check that also
audits every refusal through the command service.

- Control commands (halt, resume, flatten, audit): users in DISCORD_CONTROL_USER_IDS or with a role
  in DISCORD_CONTROL_ROLE_IDS. With neither set, nobody.
- Read-only commands (status, positions, orders, pnl, trades, help): control users, plus
  DISCORD_READ_USER_IDS / DISCORD_READ_ROLE_IDS; with both read lists empty, anyone in an
  accepted channel.
- Channels: DISCORD_COMMAND_CHANNEL_IDS when set (threads count as their parent channel),
  else any channel of the server (DISCORD_GUILD_ID when set).
- DMs: only from users named by id (control users, or read users). Roles cannot be checked
  in a DM: there is no server to look them up in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import discord
from discord.ext import commands

from bot.text import discord_actor
from config import DiscordSettings

if TYPE_CHECKING:
    from engine.app import EngineApp

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_AUDIT_ARGS = 200

CONTROL_OFF = (
    "No one may run control commands yet: set DISCORD_CONTROL_USER_IDS or DISCORD_CONTROL_ROLE_IDS."
)
NOT_ALLOWED = "You are not allowed to use this bot."
NOT_CONTROL = "Only control users may run `{command}`."
DM_REFUSED = "DMs are accepted only from allowed users."
WRONG_GUILD = "Commands are accepted only in the configured server."


class Access(StrEnum):
    READ = "read"
    CONTROL = "control"


@dataclass(frozen=True, slots=True)
class Caller:
    """The person behind a command and where they sent it from."""

    user_id: int
    display_name: str
    role_ids: frozenset[int] = frozenset()
    channel_id: int | None = None
    parent_channel_id: int | None = None
    """The parent channel when the command came from a thread."""
    guild_id: int | None = None
    is_dm: bool = False

    @property
    def actor(self) -> str:
        """How the journal names this person (``bot.text.discord_actor``)."""
        return discord_actor(self.user_id, self.display_name)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    why: str = ""
    """The short denial shown to the caller (empty when allowed)."""


ALLOWED = Decision(True)


def control_configured(settings: DiscordSettings) -> bool:
    return bool(settings.control_user_ids or settings.control_role_ids)


def is_control_user(settings: DiscordSettings, caller: Caller) -> bool:
    if caller.user_id in settings.control_user_ids:
        return True
    return not caller.is_dm and bool(caller.role_ids & set(settings.control_role_ids))


def is_read_user(settings: DiscordSettings, caller: Caller) -> bool:
    """May run read-only commands (ignoring where they are)."""
    if is_control_user(settings, caller) or caller.user_id in settings.read_user_ids:
        return True
    if caller.is_dm:
        return False
    if caller.role_ids & set(settings.read_role_ids):
        return True
    return not settings.read_user_ids and not settings.read_role_ids


def place_decision(settings: DiscordSettings, caller: Caller) -> Decision:
    """Whether commands are accepted where the caller sent this one."""
    if caller.is_dm:
        named = set(settings.control_user_ids) | set(settings.read_user_ids)
        return ALLOWED if caller.user_id in named else Decision(False, DM_REFUSED)
    if settings.guild_id is not None and caller.guild_id != settings.guild_id:
        return Decision(False, WRONG_GUILD)
    accepted = settings.command_channel_ids
    if not accepted:
        return ALLOWED
    if caller.channel_id in accepted or caller.parent_channel_id in accepted:
        return ALLOWED
    where = ", ".join(f"<#{channel_id}>" for channel_id in accepted)
    return Decision(False, f"Commands are accepted in {where} only.")


def decide(
    settings: DiscordSettings, caller: Caller, access: Access, command: str = "this command"
) -> Decision:
    """May ``caller`` run a command needing ``access`` from where they are?"""
    place = place_decision(settings, caller)
    if not place.allowed:
        return place
    if access is Access.CONTROL:
        if not control_configured(settings):
            return Decision(False, CONTROL_OFF)
        if is_control_user(settings, caller):
            return ALLOWED
        if is_read_user(settings, caller):
            return Decision(False, NOT_CONTROL.format(command=command))
        return Decision(False, NOT_ALLOWED)
    return ALLOWED if is_read_user(settings, caller) else Decision(False, NOT_ALLOWED)


# ---- discord.py glue ------------------------------------------------------------------------


class AccessDenied(commands.CheckFailure):
    """A refused command; ``str()`` is the short denial for the caller."""

    def __init__(self, why: str, access: Access) -> None:
        super().__init__(why)
        self.access = access


class AccessHost(Protocol):
    """What the checks need from the bot."""

    app: EngineApp
    discord_settings: DiscordSettings


def caller_from(
    user: discord.User | discord.Member,
    channel: object,
    guild: discord.Guild | None,
) -> Caller:
    roles: frozenset[int] = frozenset()
    if isinstance(user, discord.Member):
        roles = frozenset(role.id for role in user.roles)
    parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
    return Caller(
        user_id=user.id,
        display_name=user.display_name,
        role_ids=roles,
        channel_id=getattr(channel, "id", None),
        parent_channel_id=parent_id,
        guild_id=guild.id if guild is not None else None,
        is_dm=guild is None,
    )


def caller_of(ctx: commands.Context[Any]) -> Caller:
    return caller_from(ctx.author, ctx.channel, ctx.guild)


def command_name(ctx: commands.Context[Any]) -> str:
    return ctx.command.qualified_name if ctx.command is not None else (ctx.invoked_with or "?")


def raw_args(ctx: commands.Context[Any]) -> str:
    """What followed the command name, for the audit trail (before any parsing)."""
    if ctx.interaction is not None:
        text = " ".join(f"{k}={v}" for k, v in vars(ctx.interaction.namespace).items())
    else:
        head = (ctx.prefix or "") + (ctx.invoked_with or "")
        content = ctx.message.content.strip()
        text = content[len(head) :] if content.startswith(head) else content
    text = " ".join(text.split())
    return text if len(text) <= MAX_AUDIT_ARGS else text[: MAX_AUDIT_ARGS - 1] + "…"


async def audit_denial(app: EngineApp, caller: Caller, command: str, args: str, why: str) -> None:
    log.info(
        "denied %s %r to %s in channel %s: %s",
        command,
        args,
        caller.actor,
        caller.channel_id,
        why,
    )
    await app.commands.record_denied(caller.actor, command, args, why)


class CheckDecorator(Protocol):
    def __call__(self, func: T, /) -> T: ...


def requires(access: Access) -> CheckDecorator:
    """Check decorator: refuse (audited, short reply via the error handler) unless allowed."""

    async def predicate(ctx: commands.Context[Any]) -> bool:
        host: AccessHost = ctx.bot
        caller = caller_of(ctx)
        command = command_name(ctx)
        prefix = host.discord_settings.command_prefix
        decision = decide(host.discord_settings, caller, access, f"{prefix}{command}")
        if decision.allowed:
            return True
        await audit_denial(host.app, caller, command, raw_args(ctx), decision.why)
        raise AccessDenied(decision.why, access)

    return commands.check(predicate)
