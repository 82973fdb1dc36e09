"""Phone-first Discord rendering of command results: compact embeds within Discord's limits.

Pure functions from the command service's dataclasses to ``Reply`` values; the sentences
come from ``bot.text`` and the numbers from ``bot.fmt``. Cogs turn a ``Reply`` into
``send()`` arguments with ``send_kwargs``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import discord

from bot import fmt, text
from engine.commands import (
    AuditView,
    FlattenPreview,
    OrderView,
    PnLReport,
    PositionView,
    ResumePreview,
    StatusReport,
    TradeView,
    count,
)
from engine.domain import ZERO, TradingState

# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
MESSAGE_CHARS = 2000
TITLE_CHARS = 256
DESCRIPTION_CHARS = 4096
FIELDS_PER_EMBED = 25
FIELD_NAME_CHARS = 256
FIELD_VALUE_CHARS = 1024
FOOTER_CHARS = 2048
EMBED_TOTAL_CHARS = 6000

# A page leaves room for the title and footer inside the 6,000-character embed total.
PAGE_CHARS = 3900
# More pages than this is a scroll-fest on a phone: show the first and attach the full list.
MAX_PAGES = 3

STATE_COLOUR = {
    TradingState.ACTIVE: discord.Colour.green(),
    TradingState.REDUCING: discord.Colour.gold(),
    TradingState.HALTED: discord.Colour.red(),
}
NEUTRAL = discord.Colour.blurple()
CHART_NAME = "pnl.png"


@dataclass(frozen=True, slots=True)
class FileData:
    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """One Discord message: text and/or embeds and/or files."""

    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[FileData] = field(default_factory=list)


def send_kwargs(reply: Reply) -> dict[str, Any]:
    """Arguments for ``Messageable.send`` (fresh ``discord.File`` objects each call: a File
    can be sent only once)."""
    kwargs: dict[str, Any] = {}
    if reply.content is not None:
        kwargs["content"] = truncate(reply.content, MESSAGE_CHARS)
    if reply.embeds:
        kwargs["embeds"] = reply.embeds
    if reply.files:
        kwargs["files"] = [discord.File(io.BytesIO(f.data), filename=f.name) for f in reply.files]
    return kwargs


def truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def paginate(lines: Iterable[str], limit: int) -> list[str]:
    """Join lines into pages of at most ``limit`` characters, breaking only between lines
    (a single line longer than a page is cut)."""
    pages: list[str] = []
    current: list[str] = []
    size = 0
    for raw in lines:
        line = truncate(raw, limit)
        extra = len(line) + (1 if current else 0)
        if current and size + extra > limit:
            pages.append("\n".join(current))
            current, size, extra = [], 0, len(line)
        current.append(line)
        size += extra
    if current:
        pages.append("\n".join(current))
    return pages


def text_replies(body: str) -> list[Reply]:
    """Plain text split into messages of at most 2,000 characters."""
    return [Reply(content=page) for page in paginate(body.splitlines() or [""], MESSAGE_CHARS)]


def list_replies(
    title: str,
    lines: Sequence[str],
    *,
    empty: str,
    file_name: str,
    colour: discord.Colour = NEUTRAL,
    footer: str = "",
) -> list[Reply]:
    """A list as one embed per page; past ``MAX_PAGES`` pages, the first page plus the whole
    list attached as a text file."""
    if not lines:
        return [Reply(embeds=[_embed(title, empty, colour, footer)])]
    pages = paginate(lines, PAGE_CHARS)
    if len(pages) <= MAX_PAGES:
        count = len(pages)
        return [
            Reply(
                embeds=[
                    _embed(f"{title} ({i}/{count})" if count > 1 else title, page, colour, footer)
                ]
            )
            for i, page in enumerate(pages, start=1)
        ]
    shown = pages[0].count("\n") + 1
    note = f"Showing {shown} of {len(lines)}; the full list is attached ({file_name})."
    embed = _embed(title, pages[0], colour, f"{footer} · {note}" if footer else note)
    full = ("\n".join(lines) + "\n").encode("utf-8")
    return [Reply(embeds=[embed], files=[FileData(file_name, full)])]


def _embed(title: str, description: str, colour: discord.Colour, footer: str = "") -> discord.Embed:
    embed = discord.Embed(
        title=truncate(title, TITLE_CHARS),
        description=truncate(description, DESCRIPTION_CHARS),
        colour=colour,
    )
    if footer:
        embed.set_footer(text=truncate(footer, FOOTER_CHARS))
    return embed


def _field(embed: discord.Embed, name: str, value: str, inline: bool = True) -> None:
    if len(embed.fields) < FIELDS_PER_EMBED:
        embed.add_field(
            name=truncate(name, FIELD_NAME_CHARS),
            value=truncate(value or "-", FIELD_VALUE_CHARS),
            inline=inline,
        )


def state_colour(state: TradingState) -> discord.Colour:
    return STATE_COLOUR.get(state, NEUTRAL)


def pnl_colour(value: Decimal | None) -> discord.Colour:
    if value is None or value == ZERO:
        return NEUTRAL
    return discord.Colour.green() if value > ZERO else discord.Colour.red()


# ---- commands --------------------------------------------------------------------------------


def status_embed(r: StatusReport) -> discord.Embed:
    """Trading state and who set it first, then money, book and health."""
    head, _, rest = text.state_line(r).partition("\n")
    notes = [line for line in (rest, "⏳ flatten running" if r.flatten_running else "") if line]
    embed = _embed(head, "\n".join(notes), state_colour(r.state))
    _field(embed, "Equity", fmt.money(r.equity))
    _field(embed, "Day P&L", f"{fmt.signed_money(r.day_pnl)} ({fmt.pct(r.day_pnl_pct)})")
    _field(
        embed,
        "Exposure",
        f"gross {fmt.money(r.gross_exposure)}\nnet {fmt.money(r.net_exposure)}",
    )
    book = f"{count(r.positions, 'position')}\n{count(r.open_orders, 'open order')}"
    _field(embed, "Book", book)
    _field(embed, "Market", f"{'open' if r.market_open else 'closed'} · {r.mode}")
    _field(embed, "Feed", text.feed_line(r), inline=False)
    _field(embed, "Broker", text.broker_line(r), inline=False)
    embed.set_footer(
        text=f"Up {fmt.duration(r.uptime_s)} · heartbeat {fmt.et_time(r.last_heartbeat)}"
        f" · lag p99 {fmt.millis(r.loop_lag_p99_ms)} · dropped {r.dropped_updates}"
    )
    return embed


def by_size(positions: Iterable[PositionView]) -> list[PositionView]:
    """Largest market value first; ties by symbol."""
    return sorted(positions, key=lambda p: (-abs(p.market_value), p.symbol))


def positions_replies(positions: Sequence[PositionView]) -> list[Reply]:
    ordered = by_size(positions)
    unrealized = sum((p.unrealized_pnl for p in ordered), ZERO)
    gross = sum((abs(p.market_value) for p in ordered), ZERO)
    footer = (
        f"Gross {fmt.money(gross)} · unrealized {fmt.signed_money(unrealized)}" if ordered else ""
    )
    return list_replies(
        f"Positions ({len(ordered)})",
        [text.position_line(p) for p in ordered],
        empty=text.render_positions([]),
        file_name="positions.txt",
        colour=pnl_colour(unrealized) if ordered else NEUTRAL,
        footer=footer,
    )


def orders_replies(orders: Sequence[OrderView]) -> list[Reply]:
    return list_replies(
        f"Open orders ({len(orders)})",
        [text.order_line(o) for o in orders],
        empty=text.render_orders([]),
        file_name="orders.txt",
    )


def trades_replies(trades: Sequence[TradeView]) -> list[Reply]:
    """Today's fills, newest first."""
    return list_replies(
        f"Fills today ({len(trades)})",
        [text.trade_line(t) for t in trades],
        empty=text.render_trades([]),
        file_name="trades.txt",
    )


def audit_replies(rows: Sequence[AuditView]) -> list[Reply]:
    """The audit trail, newest first: when (New York), who, what, the result."""
    return list_replies(
        f"Audit: last {count(len(rows), 'command')}",
        [text.audit_line(a) for a in rows],
        empty=text.render_audit([]),
        file_name="audit.txt",
    )


def pnl_replies(r: PnLReport, chart_png: bytes | None) -> list[Reply]:
    """The day's P&L; the equity chart (when drawn) inside the first embed."""
    replies = list_replies(
        "P&L today",
        text.render_pnl(r).splitlines(),
        empty="No P&L yet.",
        file_name="pnl.txt",
        colour=pnl_colour(r.summary.day_pnl),
    )
    if chart_png is None:
        return replies
    first = replies[0]
    first.embeds[0].set_image(url=f"attachment://{CHART_NAME}")
    replies[0] = Reply(first.content, first.embeds, [*first.files, FileData(CHART_NAME, chart_png)])
    return replies


def confirm_hint(prefix: str, command: str, code: str, timeout_s: float) -> str:
    return (
        f"Confirm within {timeout_s:.0f} s: press **Confirm**, or type "
        f"`{prefix}{command} confirm {code}`"
    )


def expired_preview_embed(preview: discord.Embed, prefix: str, command: str) -> discord.Embed:
    """The preview once its code has expired: same content, the confirm hint replaced."""
    body, _, _hint = (preview.description or "").rpartition("\n\n")
    note = f"⌛ Expired: nothing was done. Run `{prefix}{command}` again to start over."
    return _embed(
        f"⌛ {preview.title or ''}".strip(),
        f"{body}\n\n{note}" if body else note,
        discord.Colour.light_grey(),
    )


def flatten_preview_embed(
    p: FlattenPreview, prefix: str, code: str, timeout_s: float
) -> discord.Embed:
    body = text.render_flatten_preview(p)
    hint = confirm_hint(prefix, "flatten", code, timeout_s)
    return _embed("🧹 Flatten everything?", f"{body}\n\n{hint}", discord.Colour.orange())


def resume_preview_embed(
    p: ResumePreview, prefix: str, code: str, timeout_s: float, override: bool
) -> discord.Embed:
    title = "🟢 Resume trading with loss-limit override?" if override else "🟢 Resume trading?"
    body = text.render_resume_preview(p)
    hint = confirm_hint(prefix, "resume", code, timeout_s)
    return _embed(title, f"{body}\n\n{hint}", discord.Colour.orange())


def help_embed(entries: Sequence[tuple[str, str]], prefix: str, note: str = "") -> discord.Embed:
    lines = [f"`{prefix}{usage}` · {what}" for usage, what in entries]
    if note:
        lines += ["", note]
    return _embed("Commands you can run", "\n".join(lines), NEUTRAL)
