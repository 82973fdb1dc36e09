"""Read-only commands through the real cogs and engine: who may, where, and what they see."""

from __future__ import annotations

from decimal import Decimal

import pytest
from discord.ext import commands

from bot.checks import DM_REFUSED, NOT_ALLOWED, AccessDenied
from engine.commands import CommandService, PositionView
from tests.discord.conftest import (
    COMMANDS_ID,
    PNG_MAGIC,
    Harness,
    attachment_bytes,
    audit_rows_for,
    message_text,
)
from tests.support.app import seed_position

READ_COMMANDS = ["status", "positions", "orders", "pnl", "help"]


async def test_read_commands_when_control_user_then_each_answers_and_is_audited(
    harness: Harness,
) -> None:
    await seed_position(harness.app, "AAPL", 10)
    harness.sent()

    for name in READ_COMMANDS:
        await harness.say(f"!{name}")
        assert harness.sent(), f"!{name} sent nothing"

    for name in ["status", "positions", "orders", "pnl"]:
        rows = await audit_rows_for(harness.app, name)
        assert [(r.actor, r.ok) for r in rows] == [
            (f"discord:{harness.controller.id} (alice)", True)
        ]


@pytest.mark.parametrize("who", ["reader", "role_reader", "role_controller"])
async def test_read_commands_when_read_user_or_role_then_allowed(
    harness: Harness, who: str
) -> None:
    member = getattr(harness, who)

    for name in READ_COMMANDS:
        await harness.say(f"!{name}", member=member)
        assert harness.sent(), f"!{name} sent nothing for {who}"


async def test_read_commands_when_stranger_then_short_denial_and_audit(harness: Harness) -> None:
    for name in READ_COMMANDS:
        with pytest.raises(AccessDenied):
            await harness.say(f"!{name}", member=harness.stranger)
        assert harness.last_text() == f"⛔ {NOT_ALLOWED}"

    rows = [r for r in await harness.app.journal.audit_rows(limit=50) if not r.ok]
    assert sorted(r.command for r in rows) == sorted(READ_COMMANDS)
    assert {r.result for r in rows} == {f"denied: {NOT_ALLOWED}"}
    assert {r.actor for r in rows} == {f"discord:{harness.stranger.id} (mallory)"}


async def test_read_commands_when_wrong_channel_then_pointed_to_command_channel(
    harness: Harness,
) -> None:
    for name in READ_COMMANDS:
        with pytest.raises(AccessDenied):
            await harness.say(f"!{name}", member=harness.reader, channel=harness.other)
        assert harness.last_text() == f"⛔ Commands are accepted in <#{COMMANDS_ID}> only."


async def test_read_commands_when_dm_from_listed_user_then_answered_in_dm(
    harness: Harness,
) -> None:
    dm = await harness.dm_channel(harness.reader)

    for name in READ_COMMANDS:
        await harness.say(f"!{name}", member=harness.reader, channel=dm)
        replies = harness.sent()
        assert replies, f"!{name} sent nothing in the DM"
        assert all(m.channel.id == dm.id for m in replies)


async def test_read_commands_when_dm_from_role_only_reader_then_refused(
    harness: Harness,
) -> None:
    dm = await harness.dm_channel(harness.role_reader)

    for name in READ_COMMANDS:
        with pytest.raises(AccessDenied):
            await harness.say(f"!{name}", member=harness.role_reader, channel=dm)
        assert harness.last_text() == f"⛔ {DM_REFUSED}"


async def test_read_commands_when_extra_arguments_then_usage_reply(harness: Harness) -> None:
    for name in READ_COMMANDS:
        with pytest.raises(commands.TooManyArguments):
            await harness.say(f"!{name} everything please")
        reply = harness.last_text()
        assert reply == f"`!{name}` takes no arguments."


async def test_status_when_asked_then_embed_leads_with_state_and_who_set_it(
    harness: Harness,
) -> None:
    await seed_position(harness.app, "MSFT", 5)
    harness.sent()

    await harness.say("! Status")  # phones capitalise and may add a space

    embed = harness.sent()[0].embeds[0]
    assert embed.title.startswith("🟢 ACTIVE (by ")
    fields = {f.name: f.value for f in embed.fields}
    held = len(harness.app.engine.portfolio.positions())
    assert held >= 1
    assert fields["Book"] == f"{held} positions\n0 open orders"
    assert fields["Market"] == "open · sim"
    assert fields["Feed"] == "replay finished"


async def test_positions_when_held_then_sorted_by_size_with_unrealized(harness: Harness) -> None:
    await seed_position(harness.app, "AAPL", 1)
    await seed_position(harness.app, "SPY", 200)
    harness.sent()

    await harness.say("!positions")

    embed = harness.sent()[0].embeds[0]
    lines = embed.description.split("\n")
    held = harness.app.engine.portfolio.positions()
    by_size = sorted(held, key=lambda p: -abs(p.market_value))
    assert [line.split()[0] for line in lines] == [p.symbol for p in by_size]
    assert lines[0].startswith("SPY +200 @ ")
    assert "Gross $" in embed.footer.text
    assert "unrealized" in embed.footer.text


class ManyPositions(CommandService):
    """The real service, reporting more positions than fit in one message."""

    async def positions(self, actor: str) -> list[PositionView]:
        return [
            PositionView(
                symbol=f"SYM{i:03d}",
                qty=Decimal(i + 1),
                avg_price=Decimal(100),
                last_price=Decimal("101.5"),
                market_value=Decimal(i + 1) * Decimal("101.5"),
                unrealized_pnl=Decimal(i + 1) * Decimal("1.5"),
                unrealized_pct=Decimal("1.5"),
            )
            for i in range(300)
        ]


async def test_positions_when_too_many_for_one_message_then_first_page_and_file(
    harness: Harness,
) -> None:
    harness.app.commands = ManyPositions(harness.app.engine)

    await harness.say("!positions")

    sent = harness.sent()
    assert len(sent) == 1
    embed = sent[0].embeds[0]
    assert len(embed) <= 6000
    assert len(embed.description) <= 4096
    assert embed.description.split("\n")[0].startswith("SYM299 +300")
    assert "the full list is attached" in embed.footer.text
    (attachment,) = sent[0].attachments
    assert attachment.filename == "positions.txt"
    lines = attachment_bytes(attachment).decode().splitlines()
    assert len(lines) == 300
    assert lines[-1].startswith("SYM000 +1 ")


async def test_orders_when_none_open_then_says_so(harness: Harness) -> None:
    await harness.say("!orders")

    embed = harness.sent()[0].embeds[0]
    assert embed.title == "Open orders (0)"
    assert embed.description == "No open orders."


async def test_pnl_when_asked_then_png_chart_attached_inside_embed(harness: Harness) -> None:
    await seed_position(harness.app, "AAPL", 10)
    harness.sent()

    await harness.say("!pnl")

    (message,) = harness.sent()
    embed = message.embeds[0]
    assert embed.title == "P&L today"
    assert embed.image.url == "attachment://pnl.png"
    assert "AAPL: +10" in embed.description
    (attachment,) = message.attachments
    assert attachment.filename == "pnl.png"
    assert attachment_bytes(attachment).startswith(PNG_MAGIC)


async def test_help_when_reader_then_only_read_commands_listed(harness: Harness) -> None:
    await harness.say("!help", member=harness.reader)

    listed = message_text(harness.sent()[0])
    for name in READ_COMMANDS:
        assert f"`!{name}" in listed
    for name in ["halt", "resume", "flatten"]:
        assert f"`!{name}" not in listed


async def test_help_when_control_user_then_control_commands_listed_too(harness: Harness) -> None:
    await harness.say("!help")

    listed = message_text(harness.sent()[0])
    for usage in ["!halt [reason]", "!halt keep", "!resume override", "!flatten now", "!pnl"]:
        assert f"`{usage}" in listed
