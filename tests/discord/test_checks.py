"""Who may do what, as plain rules over plain data (no Discord needed)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.checks import (
    CONTROL_OFF,
    DM_REFUSED,
    NOT_ALLOWED,
    WRONG_GUILD,
    Access,
    Caller,
    decide,
)
from config import DiscordSettings

GUILD = 1000
CMD_CHANNEL = 2000
OTHER_CHANNEL = 2001
CONTROL_USER = 11
CONTROL_ROLE = 500
READ_USER = 22
READ_ROLE = 600
NOBODY = 99


def settings(**overrides: Any) -> DiscordSettings:
    values: dict[str, Any] = {
        "guild_id": GUILD,
        "command_channel_ids": [CMD_CHANNEL],
        "control_user_ids": [CONTROL_USER],
        "control_role_ids": [CONTROL_ROLE],
        "read_user_ids": [READ_USER],
        "read_role_ids": [READ_ROLE],
    }
    values.update(overrides)
    return DiscordSettings(_env_file=None, **values)  # type: ignore[call-arg]


def caller(
    user_id: int,
    *,
    roles: tuple[int, ...] = (),
    channel: int | None = CMD_CHANNEL,
    parent: int | None = None,
    guild: int | None = GUILD,
    dm: bool = False,
) -> Caller:
    return Caller(
        user_id=user_id,
        display_name=f"user{user_id}",
        role_ids=frozenset(roles),
        channel_id=channel,
        parent_channel_id=parent,
        guild_id=None if dm else guild,
        is_dm=dm,
    )


@pytest.mark.parametrize(
    ("who", "access", "allowed"),
    [
        (caller(CONTROL_USER), Access.CONTROL, True),
        (caller(NOBODY, roles=(CONTROL_ROLE,)), Access.CONTROL, True),
        (caller(READ_USER), Access.CONTROL, False),
        (caller(NOBODY, roles=(READ_ROLE,)), Access.CONTROL, False),
        (caller(NOBODY), Access.CONTROL, False),
        (caller(CONTROL_USER), Access.READ, True),
        (caller(NOBODY, roles=(CONTROL_ROLE,)), Access.READ, True),
        (caller(READ_USER), Access.READ, True),
        (caller(NOBODY, roles=(READ_ROLE,)), Access.READ, True),
        (caller(NOBODY), Access.READ, False),
    ],
)
def test_decide_when_listed_by_id_or_role_then_allowed_accordingly(
    who: Caller, access: Access, allowed: bool
) -> None:
    assert decide(settings(), who, access).allowed is allowed


def test_decide_when_read_user_asks_for_control_then_denial_names_the_command() -> None:
    decision = decide(settings(), caller(READ_USER), Access.CONTROL, "!halt")

    assert decision == decision.__class__(False, "Only control users may run `!halt`.")


def test_decide_when_stranger_asks_for_control_then_generic_denial() -> None:
    assert decide(settings(), caller(NOBODY), Access.CONTROL).why == NOT_ALLOWED


def test_decide_when_no_control_ids_configured_then_nobody_controls_and_reply_names_settings() -> (
    None
):
    open_settings = settings(control_user_ids=[], control_role_ids=[])

    decision = decide(open_settings, caller(CONTROL_USER), Access.CONTROL)

    assert not decision.allowed
    assert decision.why == CONTROL_OFF
    assert "DISCORD_CONTROL_USER_IDS" in decision.why
    assert "DISCORD_CONTROL_ROLE_IDS" in decision.why


def test_decide_when_read_lists_empty_then_anyone_in_accepted_channel_may_read() -> None:
    open_read = settings(read_user_ids=[], read_role_ids=[])

    assert decide(open_read, caller(NOBODY), Access.READ).allowed
    assert not decide(open_read, caller(NOBODY), Access.CONTROL).allowed
    assert not decide(open_read, caller(NOBODY, channel=OTHER_CHANNEL), Access.READ).allowed


def test_decide_when_wrong_channel_then_denial_points_to_accepted_channel() -> None:
    decision = decide(settings(), caller(CONTROL_USER, channel=OTHER_CHANNEL), Access.CONTROL)

    assert decision.allowed is False
    assert decision.why == f"Commands are accepted in <#{CMD_CHANNEL}> only."


def test_decide_when_thread_of_accepted_channel_then_allowed() -> None:
    in_thread = caller(CONTROL_USER, channel=3000, parent=CMD_CHANNEL)

    assert decide(settings(), in_thread, Access.CONTROL).allowed


def test_decide_when_no_channel_list_then_any_channel_of_the_server() -> None:
    anywhere = settings(command_channel_ids=[])

    assert decide(anywhere, caller(READ_USER, channel=OTHER_CHANNEL), Access.READ).allowed


def test_decide_when_other_server_then_denied() -> None:
    decision = decide(settings(), caller(CONTROL_USER, guild=4242), Access.CONTROL)

    assert decision.why == WRONG_GUILD


@pytest.mark.parametrize(
    ("who", "access", "allowed"),
    [
        (caller(CONTROL_USER, dm=True, channel=7), Access.CONTROL, True),
        (caller(CONTROL_USER, dm=True, channel=7), Access.READ, True),
        (caller(READ_USER, dm=True, channel=7), Access.READ, True),
        (caller(READ_USER, dm=True, channel=7), Access.CONTROL, False),
        # Roles cannot be checked in a DM.
        (caller(NOBODY, roles=(CONTROL_ROLE,), dm=True, channel=7), Access.CONTROL, False),
        (caller(NOBODY, roles=(READ_ROLE,), dm=True, channel=7), Access.READ, False),
        (caller(NOBODY, dm=True, channel=7), Access.READ, False),
    ],
)
def test_decide_when_dm_then_only_users_named_by_id(
    who: Caller, access: Access, allowed: bool
) -> None:
    assert decide(settings(), who, access).allowed is allowed


def test_decide_when_dm_from_stranger_with_open_read_lists_then_refused() -> None:
    open_read = settings(read_user_ids=[], read_role_ids=[])

    decision = decide(open_read, caller(NOBODY, dm=True, channel=7), Access.READ)

    assert decision.why == DM_REFUSED


def test_caller_actor_when_rendered_then_id_and_display_name() -> None:
    assert caller(CONTROL_USER).actor == f"discord:{CONTROL_USER} (user{CONTROL_USER})"
