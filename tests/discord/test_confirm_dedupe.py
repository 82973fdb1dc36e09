"""Confirmation codes and the double-send guard: plain code on an injected clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from itertools import cycle

import pytest

from bot.confirm import (
    CODE_ALPHABET,
    ConfirmationRegistry,
    ConfirmError,
    ConfirmExpired,
    ConfirmView,
)
from bot.dedupe import DedupeGuard, dedupe_key
from engine.clock import TestClock

ALICE = 1
BOB = 2


@pytest.fixture
def clock() -> TestClock:
    return TestClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))


def registry(clock: TestClock, codes: list[str] | None = None) -> ConfirmationRegistry:
    if codes is None:
        return ConfirmationRegistry(clock, 30.0)
    supply = cycle(codes)
    return ConfirmationRegistry(clock, 30.0, new_code=lambda: next(supply))


def test_issue_when_called_then_six_unambiguous_characters() -> None:
    reg = registry(TestClock(datetime(2026, 1, 2, tzinfo=UTC)))

    codes = {reg.issue(user, "flatten").code for user in range(200)}

    assert all(re.fullmatch(r"[A-Z2-9]{6}", code) for code in codes)
    assert not set("".join(codes)) & set("01OIL")
    assert set("".join(codes)) <= set(CODE_ALPHABET)
    assert len(codes) > 190  # random, not a counter


def test_redeem_when_invoker_within_timeout_then_returns_what_was_asked(clock: TestClock) -> None:
    reg = registry(clock, ["ABC234"])
    reg.issue(ALICE, "resume", "override")
    clock.advance(29.9)

    pending = reg.redeem("abc234", ALICE, "resume")  # typed in lower case on a phone

    assert (pending.user_id, pending.command, pending.args) == (ALICE, "resume", "override")


def test_redeem_when_used_twice_then_second_refused(clock: TestClock) -> None:
    reg = registry(clock, ["ABC234"])
    reg.issue(ALICE, "flatten")
    reg.redeem("ABC234", ALICE, "flatten")

    with pytest.raises(ConfirmError, match="No confirmation is waiting with code `ABC234`"):
        reg.redeem("ABC234", ALICE, "flatten")


def test_redeem_when_someone_else_then_refused_and_code_still_works_for_invoker(
    clock: TestClock,
) -> None:
    reg = registry(clock, ["ABC234"])
    reg.issue(ALICE, "flatten")

    with pytest.raises(ConfirmError, match="Only the person who asked"):
        reg.redeem("ABC234", BOB, "flatten")
    assert reg.redeem("ABC234", ALICE, "flatten").user_id == ALICE


def test_redeem_when_expired_then_refused_with_expiry_message(clock: TestClock) -> None:
    reg = registry(clock, ["ABC234"])
    reg.issue(ALICE, "flatten")
    clock.advance(30.0)

    with pytest.raises(ConfirmError, match="expired"):
        reg.redeem("ABC234", ALICE, "flatten")


def test_redeem_when_code_is_for_another_command_then_refused(clock: TestClock) -> None:
    reg = registry(clock, ["ABC234"])
    reg.issue(ALICE, "resume")

    with pytest.raises(ConfirmError, match="is for `resume`, not `flatten`"):
        reg.redeem("ABC234", ALICE, "flatten")


def test_issue_when_asked_again_then_older_code_of_same_command_stops_working(
    clock: TestClock,
) -> None:
    reg = registry(clock, ["AAAAAA", "BBBBBB", "CCCCCC"])
    reg.issue(ALICE, "flatten")
    reg.issue(BOB, "flatten")
    reg.issue(ALICE, "flatten")

    with pytest.raises(ConfirmError, match="No confirmation"):
        reg.redeem("AAAAAA", ALICE, "flatten")
    assert reg.redeem("BBBBBB", BOB, "flatten").user_id == BOB
    assert reg.redeem("CCCCCC", ALICE, "flatten").user_id == ALICE


def test_check_when_valid_then_code_is_not_used_up(clock: TestClock) -> None:
    reg = registry(clock, ["ABC234"])
    reg.issue(ALICE, "flatten")

    reg.check("ABC234", ALICE)

    assert reg.remaining_s("ABC234") == 30.0
    assert reg.redeem("ABC234", ALICE).code == "ABC234"


def test_cancel_when_called_then_code_gone(clock: TestClock) -> None:
    reg = registry(clock, ["ABC234"])
    reg.issue(ALICE, "flatten")

    assert reg.cancel("ABC234") is True
    with pytest.raises(ConfirmError):
        reg.redeem("ABC234", ALICE)


def test_issue_when_old_codes_long_expired_then_forgotten(clock: TestClock) -> None:
    reg = registry(clock, ["AAAAAA", "BBBBBB"])
    reg.issue(ALICE, "flatten")
    clock.advance(30 * 11)

    reg.issue(BOB, "resume")

    assert len(reg) == 1


# ---- double-send guard -------------------------------------------------------------------


def test_begin_when_same_command_repeated_within_window_then_runs_once(clock: TestClock) -> None:
    guard = DedupeGuard(clock, 5.0)
    key = dedupe_key(ALICE, "halt", "keep  Spread too wide")

    assert guard.begin(key) is None
    guard.end(key)
    clock.advance(2)
    refusal = guard.begin(dedupe_key(ALICE, "HALT", "keep spread too wide"))

    assert refusal == "↩️ `halt keep spread too wide` just ran (2s ago); ignored."


def test_begin_when_first_still_running_then_repeat_told_it_is_running(clock: TestClock) -> None:
    guard = DedupeGuard(clock, 5.0)
    key = dedupe_key(ALICE, "flatten", "now")
    guard.begin(key)
    clock.advance(12)  # a slow flatten: past the window but still running

    assert guard.begin(key) == "⏳ `flatten now` is already running (12s); ignored."


def test_begin_when_window_passed_then_runs_again(clock: TestClock) -> None:
    guard = DedupeGuard(clock, 5.0)
    key = dedupe_key(ALICE, "halt")
    with guard.running(key) as refusal:
        assert refusal is None
    clock.advance(5.01)

    assert guard.begin(key) is None


def test_begin_when_other_user_or_other_args_then_not_a_repeat(clock: TestClock) -> None:
    guard = DedupeGuard(clock, 5.0)
    guard.begin(dedupe_key(ALICE, "halt"))

    assert guard.begin(dedupe_key(BOB, "halt")) is None
    assert guard.begin(dedupe_key(ALICE, "halt", "keep")) is None


def test_begin_when_window_zero_then_guard_off(clock: TestClock) -> None:
    guard = DedupeGuard(clock, 0.0)
    key = dedupe_key(ALICE, "halt")

    assert guard.begin(key) is None
    assert guard.begin(key) is None


# ---- the button view (its rules live in the registry; only its wiring is tested here) ----


async def _never(interaction: object, pending: object) -> None:
    raise AssertionError("not pressed in these tests")


async def test_confirm_view_when_timed_out_then_code_expired_and_buttons_disabled(
    clock: TestClock,
) -> None:
    reg = registry(clock, ["ABC234"])
    pending = reg.issue(ALICE, "flatten")
    view = ConfirmView(reg, pending, _never)

    assert view.timeout == 30.0
    assert [item.label for item in view.children] == ["Confirm", "Cancel"]  # type: ignore[attr-defined]
    await view.on_timeout()

    assert all(item.disabled for item in view.children)  # type: ignore[attr-defined]
    assert view.is_finished()
    with pytest.raises(ConfirmExpired, match="expired after 30 s"):
        reg.redeem("ABC234", ALICE)


async def test_confirm_view_when_retired_then_code_untouched(clock: TestClock) -> None:
    reg = registry(clock, ["ABC234"])
    view = ConfirmView(reg, reg.issue(ALICE, "flatten"), _never)

    await view.retire()

    assert view.is_finished()
    assert reg.redeem("ABC234", ALICE).code == "ABC234"
