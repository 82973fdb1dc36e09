"""Text that reads well on a phone (issue 17.7-17.9), through the real cogs and engine."""

from __future__ import annotations

import re

from bot import charts
from bot.confirm import ConfirmExpired
from engine.domain import TradingState
from tests.discord.conftest import (
    Drawn,
    Harness,
    audit_rows_for,
    code_in,
    refused,
    shown_now,
)
from tests.support.app import seed_position, wait_for


async def emptied(h: Harness) -> Harness:
    """Nothing open: the strategy's positions closed, its trading halted."""
    await h.app.engine.halt("test", "a clean book", keep_positions=False)
    h.sent()
    return h


# ---- who ---------------------------------------------------------------------------------


async def test_status_when_halted_from_discord_then_title_shows_display_name_audit_keeps_id(
    harness: Harness,
) -> None:
    await harness.say("!halt keep lunch")
    harness.sent()

    await harness.say("!status")

    title = harness.sent()[0].embeds[0].title or ""
    assert title.startswith("🔴 HALTED (by alice, ")
    assert len(title) < 45
    (row,) = await audit_rows_for(harness.app, "halt")
    assert row.actor == f"discord:{harness.controller.id} (alice)"


async def test_halt_when_already_halted_then_says_so_and_shows_the_standing_reason(
    harness: Harness,
) -> None:
    await harness.say("!halt keep broker acting up")
    harness.sent()
    harness.clock.advance(10)  # past the double-tap window

    await harness.say("!halt keep again")

    (progress,) = harness.sent()
    final = (await shown_now(progress)).content
    assert re.match(r"🔴 Already HALTED since \w{3} \w{3} \d\d \d\d:\d\d ET by alice: ", final)
    assert final.splitlines()[0].endswith(": broker acting up")
    assert len(final.splitlines()[0]) < 90
    rows = await audit_rows_for(harness.app, "halt")
    assert rows[0].result.startswith("already HALTED")


# ---- counts, prices, signs -----------------------------------------------------------------


async def test_status_when_one_position_then_1_position(harness: Harness) -> None:
    await emptied(harness)
    await seed_position(harness.app, "AAPL", 10)

    await harness.say("!status")

    book = next(f for f in harness.sent()[0].embeds[0].fields if f.name == "Book")
    assert book.value == "1 position\n0 open orders"


async def test_positions_when_held_then_prices_carry_dollar_signs(harness: Harness) -> None:
    await emptied(harness)
    await seed_position(harness.app, "AAPL", 10)

    await harness.say("!positions")

    line = (harness.sent()[0].embeds[0].description or "").splitlines()[0]
    assert re.match(r"AAPL \+10 @ \$[\d,]+\.\d\d → \$[\d,]+\.\d\d · ", line), line


async def test_flatten_now_when_nothing_open_then_nothing_to_flatten_and_audited(
    harness: Harness,
) -> None:
    await emptied(harness)

    await harness.say("!flatten now")

    assert harness.last_text() == "Nothing to flatten: no positions and no open orders."
    (row,) = await audit_rows_for(harness.app, "flatten")
    assert (row.args, row.ok) == ("now", False)
    assert row.result.startswith("ignored: Nothing to flatten")
    assert harness.app.engine.state.state is TradingState.HALTED  # no flatten ran


# ---- expired confirmations -----------------------------------------------------------------


async def test_confirm_when_buttons_timed_out_then_preview_edited_and_code_says_expired(
    harness: Harness,
) -> None:
    await seed_position(harness.app, "AAPL", 10)
    await harness.say("!flatten")
    (preview,) = harness.sent()
    code = code_in(preview)
    view = harness.bot.view_for(code)
    assert view is not None

    harness.clock.advance(31)
    await view.on_timeout()  # what discord.py's view timer calls after 30 s

    shown = (await shown_now(preview)).embeds[0]
    assert (shown.title or "").startswith("⌛ ")
    assert "⌛ Expired: nothing was done. Run `!flatten` again to start over." in (
        shown.description or ""
    )
    assert "Confirm within" not in (shown.description or "")
    error = await refused(harness, f"!flatten confirm {code}")
    assert isinstance(error, ConfirmExpired)
    assert harness.last_text() == (
        f"✋ Code `{code}` expired after 30 s; nothing was done. Run `flatten` again for a new one."
    )


async def test_confirm_when_code_typed_after_expiry_then_preview_edited_too(
    harness: Harness,
) -> None:
    await harness.app.engine.halt("test", "setup", keep_positions=True)
    await harness.say("!resume")
    (preview,) = harness.sent()
    harness.clock.advance(31)

    await refused(harness, f"!resume confirm {code_in(preview)}")

    shown = (await shown_now(preview)).embeds[0]
    assert (shown.title or "") == "⌛ 🟢 Resume trading?"
    assert "Run `!resume` again" in (shown.description or "")
    assert harness.app.engine.state.state is TradingState.HALTED


# ---- the equity chart ------------------------------------------------------------------------


async def test_pnl_chart_when_drawn_then_titled_with_the_day_and_day_pnl(
    harness: Harness, drawn_charts: list[Drawn]
) -> None:
    report = await harness.app.commands.pnl("test", audit=False)

    await harness.say("!pnl")

    await wait_for(lambda: bool(drawn_charts))
    assert [d.title for d in drawn_charts] == [charts.pnl_title(report)]
    assert re.fullmatch(
        r"Equity \w{3} \w{3} \d\d · day ([+-]?\$[\d,]+\.\d\d) \(New York time\)",
        drawn_charts[0].title,
    )
