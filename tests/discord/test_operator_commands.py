"""The operator's commands (!audit, !trades) and the one command catalog behind every list."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot import catalog
from bot.checks import NOT_CONTROL, AccessDenied
from bot.console import Console, console_help
from engine.errors import CommandError
from tests.discord.conftest import Harness, attachment_bytes, message_text, refused
from tests.support.app import seed_position


async def test_audit_when_control_user_then_newest_first_with_when_who_what_result(
    harness: Harness,
) -> None:
    await harness.say("!status")
    await harness.say("!halt keep lunch break")
    harness.sent()

    await harness.say("!audit 2")

    (reply,) = harness.sent()
    embed = reply.embeds[0]
    assert embed.title == "Audit: last 2 commands"
    halt, status = (embed.description or "").splitlines()
    assert halt.endswith(" ✅ alice: halt keep lunch break → HALTED; 0 orders cancelled")
    assert " ✅ alice: status → ACTIVE, equity " in status
    when = halt.split(" ✅ ")[0]  # New York time leads each row: "MM-DD HH:MM:SS"
    assert len(when) == 14
    assert when[2] == "-"
    assert when[8] == when[11] == ":"
    rows = await harness.app.journal.audit_rows(limit=1)
    assert (rows[0].command, rows[0].args, rows[0].actor) == (
        "audit",
        "2",
        f"discord:{harness.controller.id} (alice)",
    )


async def test_audit_when_many_rows_then_paged_like_positions_with_full_list_attached(
    harness: Harness,
) -> None:
    now = harness.app.clock.now()
    for i in range(300):
        await harness.app.journal.record_audit("console", "orders", "", True, f"row {i}", now)

    await harness.say("!audit 300")

    (reply,) = harness.sent()
    embed = reply.embeds[0]
    assert embed.title == "Audit: last 300 commands"
    assert len(embed.description or "") <= 4096
    assert "row 299" in (embed.description or "").splitlines()[0]
    assert "Showing " in (embed.footer.text or "")
    (attachment,) = reply.attachments
    assert attachment.filename == "audit.txt"
    assert attachment_bytes(attachment).decode().count("\n") == 300


async def test_audit_when_read_only_user_then_refused(harness: Harness) -> None:
    with pytest.raises(AccessDenied):
        await harness.say("!audit", member=harness.reader)

    assert harness.last_text() == "⛔ " + NOT_CONTROL.format(command="!audit")


async def test_audit_when_n_out_of_range_then_clear_message(harness: Harness) -> None:
    error = await refused(harness, "!audit 0")

    assert isinstance(error, CommandError)
    assert harness.last_text() == "✋ n must be a whole number from 1 to 500."


async def test_trades_when_filled_today_then_newest_first_with_dollar_prices(
    harness: Harness,
) -> None:
    await seed_position(harness.app, "AAPL", 10)
    await seed_position(harness.app, "AAPL", 4)
    harness.sent()

    await harness.say("!trades", member=harness.reader)

    (reply,) = harness.sent()
    embed = reply.embeds[0]
    assert embed.title.startswith("Fills today (")
    lines = (embed.description or "").splitlines()
    sold = [line for line in lines if " Sold 6 AAPL @ $" in line]
    bought = [line for line in lines if " Bought 10 AAPL @ $" in line]
    assert sold
    assert bought
    assert lines.index(sold[0]) < lines.index(bought[0])  # newest first
    assert " · realized " in sold[0]


async def test_resume_when_active_but_a_strategy_paused_then_preview_offers_to_restart_it(
    harness: Harness,
) -> None:
    name = next(iter(harness.app.engine.strategies.specs))
    harness.app.engine.strategies.paused[name] = "RuntimeError in on_bar for SPY: boom"

    await harness.say("!resume")

    (preview,) = harness.sent()
    assert f"Paused after an error, restarted too: {name}." in message_text(preview)


# ---- one catalog -------------------------------------------------------------------------


def test_catalog_when_bot_loaded_then_its_commands_are_exactly_the_catalogs(
    harness: Harness,
) -> None:
    discord_names = {
        c.name
        for c in catalog.COMMANDS
        for line in c.lines
        if line.surface & catalog.Surface.DISCORD
    }

    assert {c.name for c in harness.bot.commands} == discord_names
    for command in harness.bot.commands:
        spec = catalog.command(command.name)
        assert command.description == spec.description
        assert len(command.description) <= 100


async def test_console_help_when_asked_then_every_catalog_console_command_runs(
    harness: Harness, tmp_path: Path
) -> None:
    out = io.StringIO()
    console = Console(harness.app, out)
    names = [
        c.name
        for c in catalog.COMMANDS
        for line in c.lines
        if line.surface & catalog.Surface.CONSOLE
    ]

    await console.handle("!help")
    for name in dict.fromkeys(names):
        if name not in ("quit", "help", "halt", "flatten", "resume"):
            await console.handle(f"!{name}")

    shown = out.getvalue()
    assert shown.startswith(console_help())
    assert "Unknown command" not in shown
    assert "Something went wrong" not in shown


def test_docs_when_read_then_every_discord_command_is_documented() -> None:
    root = Path(__file__).resolve().parents[2]
    guide = (root / "docs" / "discord.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")

    for spec in catalog.COMMANDS:
        if any(line.surface & catalog.Surface.DISCORD for line in spec.lines):
            assert f"`!{spec.name}" in guide, spec.name
            assert f"`!{spec.name}" in readme, spec.name
