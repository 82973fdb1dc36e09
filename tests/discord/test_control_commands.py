"""Control commands through the real cogs and engine: halt, resume, flatten, and who may."""

from __future__ import annotations

from pathlib import Path

import pytest
from discord.ext import commands

from bot.checks import CONTROL_OFF, DM_REFUSED, NOT_ALLOWED, AccessDenied
from bot.confirm import ConfirmError
from engine.domain import TradingState
from tests.discord.conftest import (
    COMMANDS_ID,
    DEFAULT_DISCORD,
    Harness,
    audit_rows_for,
    code_in,
    keep_text_with_files,
    message_text,
    open_harness,
    refused,
    shown_now,
)
from tests.support.app import seed_position

CONTROL_INPUTS = ["!halt", "!halt keep", "!resume", "!flatten", "!flatten now"]


def held(h: Harness) -> dict[str, int]:
    return {p.symbol: int(p.qty) for p in h.app.engine.portfolio.positions()}


def state(h: Harness) -> TradingState:
    return h.app.engine.state.state


@pytest.fixture
async def book(harness: Harness) -> Harness:
    """Two positions of our own on top of whatever the strategy holds."""
    await seed_position(harness.app, "AAPL", 10)
    await seed_position(harness.app, "MSFT", -5)
    harness.sent()
    return harness


# ---- halt ------------------------------------------------------------------------------------


async def test_halt_when_control_user_then_halted_flat_audited_and_one_message_edited(
    book: Harness,
) -> None:
    await book.say("!halt spread   too wide")

    (progress,) = book.sent()
    assert progress.content == "🔴 Halting: closing everything…"
    final = (await shown_now(progress)).content
    actor = f"discord:{book.controller.id} (alice)"
    assert final.startswith("🔴 HALTED by alice: spread too wide")
    assert "✅ Flat in" in final
    assert state(book) is TradingState.HALTED
    assert held(book) == {}
    (row,) = await audit_rows_for(book.app, "halt")
    assert (row.actor, row.args, row.ok) == (actor, "spread too wide", True)


async def test_halt_keep_when_control_user_then_halted_and_positions_kept(book: Harness) -> None:
    before = held(book)

    await book.say("!halt keep checking the feed")

    final = (await shown_now(book.sent()[0])).content
    assert "Positions kept." in final
    assert state(book) is TradingState.HALTED
    assert held(book) == before
    (row,) = await audit_rows_for(book.app, "halt")
    assert row.args == "keep checking the feed"


async def test_halt_when_control_role_then_allowed(harness: Harness) -> None:
    await harness.say("!halt keep", member=harness.role_controller)

    assert state(harness) is TradingState.HALTED
    (row,) = await audit_rows_for(harness.app, "halt")
    assert row.actor == f"discord:{harness.role_controller.id} (bob)"


async def test_halt_when_reason_far_too_long_then_still_halts_with_reason_cut(
    harness: Harness,
) -> None:
    await harness.say("!halt keep " + "x" * 500)

    assert state(harness) is TradingState.HALTED
    record = harness.app.engine.state.record
    assert len(record.reason) == 200
    assert record.reason.endswith("x…")


# ---- who may ------------------------------------------------------------------------------


async def test_control_commands_when_read_user_then_refused_nothing_happens_audited(
    book: Harness,
) -> None:
    before = held(book)

    for content in CONTROL_INPUTS:
        error = await refused(book, content, member=book.reader)
        assert isinstance(error, AccessDenied)
        name = content.split()[0]
        assert book.last_text() == f"⛔ Only control users may run `{name}`."

    assert state(book) is TradingState.ACTIVE
    assert held(book) == before
    denied = [r for r in await book.app.journal.audit_rows(limit=50) if not r.ok]
    assert len(denied) == len(CONTROL_INPUTS)
    assert {r.actor for r in denied} == {f"discord:{book.reader.id} (carol)"}
    assert {r.args for r in denied} == {"", "keep", "now"}


async def test_control_commands_when_stranger_then_refused_and_audited(book: Harness) -> None:
    for content in CONTROL_INPUTS:
        assert isinstance(await refused(book, content, member=book.stranger), AccessDenied)
        assert book.last_text() == f"⛔ {NOT_ALLOWED}"

    assert state(book) is TradingState.ACTIVE
    denied = [r for r in await book.app.journal.audit_rows(limit=50) if not r.ok]
    assert sorted(r.command for r in denied) == ["flatten", "flatten", "halt", "halt", "resume"]


async def test_control_commands_when_wrong_channel_then_refused(book: Harness) -> None:
    for content in CONTROL_INPUTS:
        await refused(book, content, channel=book.other)
        assert book.last_text() == f"⛔ Commands are accepted in <#{COMMANDS_ID}> only."

    assert state(book) is TradingState.ACTIVE


async def test_halt_when_dm_from_control_user_then_halts_and_answers_in_dm(
    harness: Harness,
) -> None:
    dm = await harness.dm_channel(harness.controller)

    await harness.say("!halt keep from my phone", channel=dm)

    (progress,) = harness.sent()
    assert progress.channel.id == dm.id
    assert ((await shown_now(progress)).content).startswith("🔴 HALTED by")
    assert state(harness) is TradingState.HALTED


async def test_control_commands_when_dm_from_role_only_controller_then_refused(
    book: Harness,
) -> None:
    dm = await book.dm_channel(book.role_controller)

    for content in CONTROL_INPUTS:
        await refused(book, content, member=book.role_controller, channel=dm)
        assert book.last_text() == f"⛔ {DM_REFUSED}"

    assert state(book) is TradingState.ACTIVE


async def test_control_commands_when_no_control_ids_set_then_nobody_and_reply_names_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep_text_with_files(monkeypatch)
    no_control = {**DEFAULT_DISCORD, "control_user_ids": [], "control_role_ids": []}
    async with open_harness(tmp_path, discord_settings=no_control) as h:
        for content in CONTROL_INPUTS:
            await refused(h, content)
            assert h.last_text() == f"⛔ {CONTROL_OFF}"
        await h.say("!help", member=h.reader)
        listed = h.last_text()

        assert state(h) is TradingState.ACTIVE
    assert "DISCORD_CONTROL_USER_IDS" in listed
    assert "`!halt" not in listed


async def test_control_commands_when_malformed_then_usage_and_nothing_happens(
    book: Harness,
) -> None:
    cases = {
        "!flatten banana": "Usage: `!flatten [now | confirm <code>]`",
        "!flatten confirm": "Usage: `!flatten [now | confirm <code>]`",
        "!flatten now please": "Usage: `!flatten [now | confirm <code>]`",
        "!resume maybe": "Usage: `!resume [override | confirm <code>]`",
        "!resume confirm ABC234 extra": "Too many arguments. Usage: `!resume [override | conf",
    }
    for content, usage in cases.items():
        error = await refused(book, content)
        assert isinstance(error, commands.UserInputError), content
        assert usage in book.last_text(), content

    assert state(book) is TradingState.ACTIVE
    assert len(held(book)) >= 2


# ---- flatten with confirmation ------------------------------------------------------------


async def test_flatten_when_confirmed_by_text_code_then_flat_and_progress_message_final(
    book: Harness,
) -> None:
    await book.say("!flatten")
    (preview,) = book.sent()
    shown = message_text(preview)
    assert "Flatten will close" in shown
    assert "Market open." in shown
    assert "AAPL +10" in shown
    assert "MSFT -5" in shown
    code = code_in(preview)

    await book.say(f"!flatten confirm {code.lower()}")

    (progress,) = book.sent()
    assert book.bot.confirmations.remaining_s(code) == 0.0
    final = (await shown_now(progress)).content
    assert final.startswith("✅ Flat in")
    assert held(book) == {}
    (row,) = await audit_rows_for(book.app, "flatten")
    assert row.ok
    assert row.result.startswith("flat in")


async def test_flatten_when_wrong_code_then_refused_audited_and_positions_stay(
    book: Harness,
) -> None:
    before = held(book)
    await book.say("!flatten")
    book.sent()

    error = await refused(book, "!flatten confirm ZZZZZZ")

    assert isinstance(error, ConfirmError)
    assert book.last_text() == "✋ No confirmation is waiting with code `ZZZZZZ`."
    assert held(book) == before
    (row,) = await audit_rows_for(book.app, "flatten")
    assert not row.ok
    assert row.args == "confirm ZZZZZZ"
    assert row.result.startswith("denied: No confirmation is waiting")


async def test_flatten_when_someone_elses_code_then_refused_and_invoker_can_still_confirm(
    book: Harness,
) -> None:
    await book.say("!flatten")
    code = code_in(book.sent()[0])

    await refused(book, f"!flatten confirm {code}", member=book.role_controller)
    assert book.last_text() == "✋ Only the person who asked can confirm this."
    assert len(held(book)) >= 2

    await book.say(f"!flatten confirm {code}")
    assert held(book) == {}


async def test_flatten_when_code_expired_then_refused_and_positions_stay(book: Harness) -> None:
    await book.say("!flatten")
    code = code_in(book.sent()[0])
    book.clock.advance(30.5)

    error = await refused(book, f"!flatten confirm {code}")

    assert isinstance(error, ConfirmError)
    assert book.last_text() == (
        f"✋ Code `{code}` expired after 30 s; nothing was done. Run `flatten` again for a new one."
    )
    assert len(held(book)) >= 2


async def test_flatten_when_resume_code_given_then_refused(harness: Harness) -> None:
    await harness.app.engine.halt("test", "setup", keep_positions=True)
    await harness.say("!resume")
    code = code_in(harness.sent()[0])

    await refused(harness, f"!flatten confirm {code}")

    assert harness.last_text() == f"✋ Code `{code}` is for `resume`, not `flatten`."


async def test_flatten_now_when_control_user_then_no_confirmation_and_final_state_shown(
    book: Harness,
) -> None:
    count = len(held(book))

    await book.say("!flatten now")

    (progress,) = book.sent()
    assert progress.content == "🧹 Flatten: starting…"
    final = (await shown_now(progress)).content
    assert final.startswith("✅ Flat in")
    assert final.endswith(f"({count} positions closed).")
    assert held(book) == {}
    assert state(book) is TradingState.ACTIVE


async def test_flatten_when_nothing_held_then_says_so_without_a_code(harness: Harness) -> None:
    await harness.say("!flatten now")  # clear whatever the strategy holds
    harness.sent()
    harness.clock.advance(10)

    await harness.say("!flatten")

    assert harness.last_text() == "Nothing to flatten: no positions and no open orders."
    assert len(harness.bot.confirmations) == 0


# ---- resume -------------------------------------------------------------------------------


async def test_resume_when_halted_and_confirmed_then_active_and_audited(harness: Harness) -> None:
    await harness.say("!halt keep lunch")
    harness.sent()

    await harness.say("!resume")
    preview = harness.sent()[0]
    assert "Resume trading from HALTED" in message_text(preview)
    await harness.say(f"!resume confirm {code_in(preview)}")

    assert harness.last_text() == "🟢 HALTED → ACTIVE by alice."
    assert state(harness) is TradingState.ACTIVE
    (row,) = await audit_rows_for(harness.app, "resume")
    assert row.actor == f"discord:{harness.controller.id} (alice)"
    assert row.ok
    assert row.result == "HALTED -> ACTIVE"


async def test_resume_when_already_active_then_told_and_no_code(harness: Harness) -> None:
    error = await refused(harness, "!resume")

    assert str(error) == "Trading is already ACTIVE."
    assert harness.last_text() == "✋ Trading is already ACTIVE."
    assert len(harness.bot.confirmations) == 0


async def test_resume_when_loss_limit_halt_then_only_override_lifts_it(harness: Harness) -> None:
    await harness.app.engine.halt(
        "risk", "daily loss limit hit", cause="loss_limit", keep_positions=True
    )

    await refused(harness, "!resume")
    assert (
        harness.last_text()
        == "✋ This is a loss-limit halt: only `resume override` lifts it today."
    )
    assert state(harness) is TradingState.HALTED

    await harness.say("!resume override")
    preview = harness.sent()[0]
    assert "loss-limit override" in message_text(preview)
    await harness.say(f"!resume confirm {code_in(preview)}")

    assert state(harness) is TradingState.ACTIVE
    rows = await audit_rows_for(harness.app, "resume")
    assert [(r.ok, r.args) for r in rows] == [(True, "override"), (False, "")]


# ---- double send --------------------------------------------------------------------------


async def test_halt_when_sent_twice_quickly_then_runs_once_and_repeat_audited_as_ignored(
    harness: Harness,
) -> None:
    await harness.say("!halt keep double tap")
    harness.sent()

    await harness.say("!halt keep double tap")

    reply = "↩️ `halt keep double tap` just ran (0s ago); ignored."
    assert harness.last_text() == reply
    ignored, ran = await audit_rows_for(harness.app, "halt")
    assert (ignored.ok, ignored.args, ignored.result) == (
        False,
        "keep double tap",
        f"ignored: {reply}",
    )
    assert ran.ok

    harness.clock.advance(6)
    await harness.say("!halt keep double tap")
    assert [r.ok for r in await audit_rows_for(harness.app, "halt")] == [True, False, True]


async def test_flatten_confirm_when_sent_twice_then_second_told_it_just_ran_and_audited(
    book: Harness,
) -> None:
    await book.say("!flatten")
    code = code_in(book.sent()[0])
    await book.say(f"!flatten confirm {code}")
    book.sent()

    await book.say(f"!flatten confirm {code}")

    assert book.last_text() == f"↩️ `flatten confirm {code.lower()}` just ran (0s ago); ignored."
    ignored, ran = await audit_rows_for(book.app, "flatten")
    assert (ignored.ok, ignored.args) == (False, f"confirm {code}")
    assert ignored.result.startswith("ignored: ↩️")
    assert ran.ok
