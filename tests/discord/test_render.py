"""Phone-first rendering within Discord's limits (pure functions, no Discord)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import discord

from bot import charts, render, text
from bot.charts import render_equity_curve
from engine.commands import BrokerStatus, FeedStatus, PnLReport, PositionView, StatusReport
from engine.domain import TradingState
from engine.flatten import FlattenReport, SymbolOutcome
from engine.portfolio import PnLSummary
from tests.discord.conftest import PNG_MAGIC

NOW = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


def position(symbol: str, qty: int, price: str, avg: str = "100") -> PositionView:
    q, p, a = Decimal(qty), Decimal(price), Decimal(avg)
    return PositionView(
        symbol=symbol,
        qty=q,
        avg_price=a,
        last_price=p,
        market_value=q * p,
        unrealized_pnl=q * (p - a),
        unrealized_pct=(p - a) / a * 100,
    )


def many_positions(n: int) -> list[PositionView]:
    return [position(f"S{i:03d}", (i % 50) + 1, f"{100 + i}.25") for i in range(n)]


def status(state: TradingState = TradingState.HALTED) -> StatusReport:
    return StatusReport(
        state=state,
        state_actor="discord:42 (alice)",
        state_reason="spread too wide",
        state_cause="manual",
        state_since=NOW,
        loss_limit_locked=False,
        mode="sim",
        equity=Decimal("100123.456"),
        cash=Decimal("90000"),
        day_pnl=Decimal("-123.45"),
        day_pnl_pct=Decimal("-0.1232"),
        gross_exposure=Decimal("10123.45"),
        net_exposure=Decimal("-2000"),
        positions=3,
        open_orders=1,
        market_open=True,
        feed=FeedStatus(True, 2.0, 100, 0, 0, False, ""),
        broker=BrokerStatus("sim", True, 12.3, "", 0),
        last_heartbeat=NOW,
        uptime_s=3700,
        loop_lag_p99_ms=1.5,
        dropped_updates=0,
        flatten_running=False,
        now=NOW,
    )


def within_limits(embed: discord.Embed) -> None:
    assert len(embed) <= render.EMBED_TOTAL_CHARS
    assert len(embed.description or "") <= render.DESCRIPTION_CHARS
    assert len(embed.title or "") <= render.TITLE_CHARS
    assert len(embed.fields) <= render.FIELDS_PER_EMBED


def test_paginate_when_lines_exceed_limit_then_pages_break_between_lines() -> None:
    lines = ["a" * 40] * 10  # 10 lines of 40 + 9 newlines = 409 characters

    pages = render.paginate(lines, 100)

    assert [len(p) for p in pages] == [81, 81, 81, 81, 81]
    assert "\n".join(pages).split("\n") == lines


def test_paginate_when_one_line_longer_than_a_page_then_it_is_cut() -> None:
    pages = render.paginate(["x" * 150, "y"], 100)

    assert pages == ["x" * 99 + "…", "y"]


def test_positions_replies_when_300_positions_then_first_page_and_full_file() -> None:
    positions = many_positions(300)

    replies = render.positions_replies(positions)

    assert len(replies) == 1
    embed = replies[0].embeds[0]
    within_limits(embed)
    assert embed.title == "Positions (300)"
    shown = embed.description.split("\n")
    assert shown[0].startswith("S299 +50 @ $100.00 → $399.25")  # the largest first
    assert f"Showing {len(shown)} of 300" in embed.footer.text
    attached = replies[0].files[0]
    assert attached.name == "positions.txt"
    lines = attached.data.decode().splitlines()
    assert len(lines) == 300
    assert lines[: len(shown)] == shown


def test_positions_replies_when_a_few_pages_then_each_page_its_own_embed() -> None:
    positions = many_positions(120)  # ~70 chars each: 2-3 pages

    replies = render.positions_replies(positions)

    assert 2 <= len(replies) <= render.MAX_PAGES
    assert all(not r.files for r in replies)
    assert replies[0].embeds[0].title == f"Positions (120) (1/{len(replies)})"
    for reply in replies:
        within_limits(reply.embeds[0])
    all_lines = [line for r in replies for line in r.embeds[0].description.split("\n")]
    assert len(all_lines) == 120


def test_positions_replies_when_sorted_then_largest_absolute_value_first() -> None:
    small = position("AAA", 1, "10")
    short = position("BBB", -50, "100")
    mid = position("CCC", 20, "100")

    replies = render.positions_replies([small, mid, short])

    symbols = [line.split()[0] for line in replies[0].embeds[0].description.split("\n")]
    assert symbols == ["BBB", "CCC", "AAA"]


def test_positions_replies_when_none_then_says_so() -> None:
    assert render.positions_replies([])[0].embeds[0].description == "No open positions."


def test_status_embed_when_halted_then_leads_with_state_and_who_in_red() -> None:
    embed = render.status_embed(status())

    within_limits(embed)
    assert embed.title.startswith("🔴 HALTED (by alice, ")
    assert embed.description == "Reason: spread too wide"
    assert embed.colour == discord.Colour.red()
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Equity"] == "$100,123.46"
    assert fields["Day P&L"] == "-$123.45 (-0.12%)"
    assert fields["Book"] == "3 positions\n1 open order"
    assert fields["Broker"] == "sim ok, 12 ms"
    assert list(fields)[:2] == ["Equity", "Day P&L"]


def test_status_embed_when_active_then_green() -> None:
    assert render.status_embed(status(TradingState.ACTIVE)).colour == discord.Colour.green()


def test_text_replies_when_long_then_split_under_message_limit() -> None:
    body = "\n".join(f"line {i} " + "x" * 90 for i in range(60))

    replies = render.text_replies(body)

    assert len(replies) == 3
    assert all(len(r.content or "") <= render.MESSAGE_CHARS for r in replies)


def pnl_report(points: int) -> PnLReport:
    summary = PnLSummary(
        realized=Decimal(0),
        day_realized=Decimal("12.5"),
        unrealized=Decimal("-2.5"),
        commissions=Decimal(1),
        day_commissions=Decimal(1),
        equity=Decimal("100010"),
        day_start_equity=Decimal("100000"),
        day_pnl=Decimal("10"),
        gross_exposure=Decimal(0),
        net_exposure=Decimal(0),
        by_symbol=[],
    )
    curve = [(NOW + timedelta(minutes=i), Decimal(100000 + i)) for i in range(points)]
    return PnLReport(summary=summary, curve=curve)


def test_pnl_replies_when_chart_given_then_image_inside_first_embed() -> None:
    replies = render.pnl_replies(pnl_report(3), b"png-bytes")

    embed = replies[0].embeds[0]
    assert embed.image.url == "attachment://pnl.png"
    assert replies[0].files == [render.FileData("pnl.png", b"png-bytes")]
    assert embed.description.startswith("Day +$10.00 · equity $100,010.00")
    assert embed.colour == discord.Colour.green()


def test_render_equity_curve_when_points_then_png_bytes() -> None:
    png = render_equity_curve(pnl_report(30).curve)

    assert png.startswith(PNG_MAGIC)


def test_render_equity_curve_when_no_points_then_still_a_png() -> None:
    assert render_equity_curve([]).startswith(PNG_MAGIC)


def test_render_equity_curve_when_one_point_then_png_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = render_equity_curve(pnl_report(1).curve)

    assert png.startswith(PNG_MAGIC)


def test_status_embed_when_day_pnl_rounds_to_zero_then_no_minus_zero() -> None:
    embed = render.status_embed(
        replace(status(), day_pnl=Decimal("-0.001"), day_pnl_pct=Decimal("-0.000001"))
    )

    day = next(f for f in embed.fields if f.name == "Day P&L")
    assert day.value == "$0.00 (0.00%)"


def test_render_flatten_when_market_closed_then_the_engine_sentence_once_as_it_is() -> None:
    queued = "close order queued for the open"
    report = FlattenReport(
        actor="alice",
        started_at=NOW,
        flat=False,
        elapsed_s=0.4,
        outcomes=[
            SymbolOutcome("AAPL", Decimal(10), "queued", Decimal(10), queued),
            SymbolOutcome("MSFT", Decimal(-5), "queued", Decimal(-5), queued),
            SymbolOutcome("SPY", Decimal(3), "open", Decimal(3), "no close order accepted"),
        ],
        open_orders_left=2,
        market_open=False,
        next_open=datetime(2026, 11, 23, 14, 30, tzinfo=UTC),
        market_note="Market closed: close orders queued, they fill at Mon Nov 23 09:30 ET.",
    )

    shown = text.render_flatten(report)

    assert shown.lower().count("market") == 1
    assert shown == (
        "⏸️ Market closed: close orders queued, they fill at Mon Nov 23 09:30 ET.\n"
        "AAPL +10 queued: close order queued for the open\n"
        "MSFT -5 queued: close order queued for the open\n"
        "SPY +3 open: no close order accepted"
    )


def test_equity_chart_when_equity_moves_a_few_dollars_then_y_labels_distinct() -> None:
    start = NOW - timedelta(hours=3)
    curve = [
        (start + timedelta(minutes=m), Decimal("100000") + Decimal(m % 7) / 2) for m in range(180)
    ]

    labels = y_labels(curve)

    assert len(labels) >= 3
    assert len(set(labels)) == len(labels), labels
    assert all(label.startswith("$100,00") for label in labels)


def test_equity_chart_when_equity_flat_then_y_labels_still_distinct() -> None:
    curve = [(NOW - timedelta(minutes=m), Decimal("100000")) for m in range(30)]

    labels = y_labels(curve)

    assert len(set(labels)) == len(labels) >= 2, labels


def test_equity_chart_when_equity_moves_thousands_then_whole_dollar_labels() -> None:
    curve = [(NOW - timedelta(minutes=m), Decimal(100000 + 40 * m)) for m in range(60)]

    labels = y_labels(curve)

    assert all("." not in label for label in labels), labels


def test_pnl_title_when_report_then_day_and_day_pnl() -> None:
    report = pnl_report(30)

    assert charts.pnl_title(report) == "Equity Fri Nov 20 · day +$10.00 (New York time)"


def y_labels(curve: list[tuple[datetime, Decimal]]) -> list[str]:
    fig = charts.equity_figure(curve)
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    return [
        t.get_text()
        for t, loc in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
        if low <= loc <= high
    ]
