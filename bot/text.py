"""Plain-text rendering of command results: short lines that read on a phone.

The console prints these as they are; Discord embeds reuse the same sentences.
"""

from __future__ import annotations

import re

from bot import fmt
from engine.clock import NEW_YORK
from engine.commands import (
    AuditView,
    FlattenPreview,
    HaltReport,
    OrderView,
    PnLReport,
    PositionView,
    ResumePreview,
    ResumeReport,
    StatusReport,
    TradeView,
    count,
)
from engine.domain import Side
from engine.flatten import FlattenProgress, FlattenReport, SymbolOutcome

STATE_ICON = {"ACTIVE": "🟢", "REDUCING": "🟡", "HALTED": "🔴"}
NOTHING_TO_FLATTEN = "Nothing to flatten: no positions and no open orders."
_DISCORD_ACTOR = re.compile(r"discord:(\d+) \((.*)\)", re.DOTALL)


def discord_actor(user_id: int, display_name: str) -> str:
    """How the journal names a Discord user: ``discord:<id> (<name>)`` (the id is what the
    audit needs; ``who`` shows the name)."""
    return f"discord:{user_id} ({display_name})"


def who(actor: str) -> str:
    """The actor as a person reads it: a Discord user's display name, anyone else as named
    (``console``, ``risk``, ``scheduler``)."""
    match = _DISCORD_ACTOR.fullmatch(actor)
    return match.group(2) if match else actor


def state_line(r: StatusReport) -> str:
    icon = STATE_ICON.get(r.state.value, "")
    line = f"{icon} {r.state.value} (by {who(r.state_actor)}, {fmt.et_datetime(r.state_since)})"
    if r.state_reason:
        line += f"\nReason: {r.state_reason}"
    if r.loss_limit_locked:
        line += "\nLoss-limit halt: `resume override` needed today"
    return line.strip()


def feed_line(r: StatusReport) -> str:
    f = r.feed
    if f.finished:
        state = "replay finished"
    elif f.connected:
        state = f"live, last {fmt.duration(f.last_message_age_s)} ago"
    else:
        state = "DOWN" + (f" ({f.detail})" if f.detail else "")
    extras = []
    if f.malformed:
        extras.append(f"{f.malformed} malformed")
    if f.reconnects:
        extras.append(f"{f.reconnects} reconnects")
    return state + (f" ({', '.join(extras)})" if extras else "")


def broker_line(r: StatusReport) -> str:
    b = r.broker
    if b.ok:
        return f"{b.name} ok, {fmt.millis(b.round_trip_ms)}"
    return f"{b.name} FAILING x{b.consecutive_failures}: {b.last_error}"


def render_status(r: StatusReport) -> str:
    lines = [
        state_line(r),
        f"Mode {r.mode} · market {'open' if r.market_open else 'closed'}",
        f"Equity {fmt.money(r.equity)} · day {fmt.signed_money(r.day_pnl)}"
        f" ({fmt.pct(r.day_pnl_pct)})",
        f"Exposure gross {fmt.money(r.gross_exposure)} · net {fmt.money(r.net_exposure)}",
        f"{count(r.positions, 'position')} · {count(r.open_orders, 'open order')}",
        f"Feed: {feed_line(r)}",
        f"Broker: {broker_line(r)}",
        f"Up {fmt.duration(r.uptime_s)} · heartbeat {fmt.et_time(r.last_heartbeat)}"
        f" · lag p99 {fmt.millis(r.loop_lag_p99_ms)} · dropped {r.dropped_updates}",
    ]
    if r.flatten_running:
        lines.insert(1, "⏳ flatten running")
    return "\n".join(lines)


def position_line(p: PositionView) -> str:
    return (
        f"{p.symbol} {fmt.signed_qty(p.qty)} @ {fmt.price(p.avg_price)}"
        f" → {fmt.price(p.last_price)} · {fmt.signed_money(p.unrealized_pnl)}"
        f" ({fmt.pct(p.unrealized_pct)}) · {p.strategy or 'no strategy'}"
    )


def render_positions(positions: list[PositionView]) -> str:
    if not positions:
        return "No open positions."
    return "\n".join(position_line(p) for p in positions)


def order_line(o: OrderView) -> str:
    kind = "mkt" if o.limit_price is None else f"lmt {fmt.price(o.limit_price)}"
    filled = f" ({fmt.qty(o.filled_qty)} filled)" if o.filled_qty else ""
    return (
        f"{o.symbol} {o.side.value} {fmt.qty(o.qty)} {kind}{filled} · "
        f"{o.status.value} · {fmt.duration(o.age_s)} old"
    )


def render_orders(orders: list[OrderView]) -> str:
    if not orders:
        return "No open orders."
    return "\n".join(order_line(o) for o in orders)


def render_pnl(r: PnLReport) -> str:
    s = r.summary
    lines = [
        f"Day {fmt.signed_money(s.day_pnl)} · equity {fmt.money(s.equity)}",
        f"Realized today {fmt.signed_money(s.day_realized)} · "
        f"unrealized {fmt.signed_money(s.unrealized)}",
        f"Fees today {fmt.money(s.day_commissions)}",
    ]
    for row in s.by_symbol:
        lines.append(
            f"{row.symbol}: {fmt.signed_qty(row.qty)}"
            f" · unreal {fmt.signed_money(row.unrealized_pnl)}"
            f" · real today {fmt.signed_money(row.day_realized_pnl)}"
        )
    for st in r.by_strategy:
        lines.append(
            f"{st.strategy or 'no strategy'}: {count(st.positions, 'position')}"
            f" · unreal {fmt.signed_money(st.unrealized)}"
            f" · real today {fmt.signed_money(st.day_realized)}"
        )
    return "\n".join(lines)


def render_flatten_progress(p: FlattenProgress) -> str:
    if p.total == 0:
        return "Flatten: no positions; cancelling open orders…"
    verb = {"closing": "Closing", "confirming": "Confirming", "retrying": "Retrying"}.get(
        p.phase, "Flatten"
    )
    what = count(p.total, "position")
    return f"{verb} {what}: {p.done} of {p.total} done ({p.elapsed_s:.1f} s)"


def render_flatten(r: FlattenReport) -> str:
    prefix = "(joined the flatten already running) " if r.joined else ""
    if r.flat:
        closed = count(len(r.outcomes), "position")
        return f"{prefix}✅ Flat in {r.elapsed_s:.1f} s ({closed} closed)."
    if not r.market_open:
        # The engine's one sentence on the closed market, up front and as it is.
        lines = [f"{prefix}⏸️ {r.market_note}"]
        lines += [_leftover(o, o.detail) for o in r.leftovers]
        lines += r.notes
        return "\n".join(lines)
    lines = [f"{prefix}⚠️ Not flat after {r.elapsed_s:.1f} s."]
    lines += [_leftover(o, o.detail) for o in r.leftovers]
    if r.open_orders_left > 0:
        lines.append(f"{count(r.open_orders_left, 'open order')} remain")
    lines.extend(r.notes)
    return "\n".join(lines)


def _leftover(o: SymbolOutcome, detail: str) -> str:
    return f"{o.symbol} {fmt.signed_qty(o.qty_left)} {o.status}" + (f": {detail}" if detail else "")


def render_halt(r: HaltReport) -> str:
    record = r.record
    if r.already_halted:
        since = fmt.et_datetime(record.ts)
        head = f"🔴 Already HALTED since {since} by {who(record.actor)}: {record.reason}"
    else:
        head = f"🔴 HALTED by {who(record.actor)}: {record.reason}"
    lines = [head, f"{count(r.cancelled_orders, 'open order')} cancelled."]
    lines.append("Positions kept." if r.flatten is None else render_flatten(r.flatten))
    return "\n".join(lines)


def render_resume(r: ResumeReport) -> str:
    text = f"🟢 {r.previous.value} → {r.record.state.value} by {who(r.record.actor)}."
    if r.strategies:
        text += f" Strategies running again: {', '.join(r.strategies)}."
    return text


def render_flatten_preview(p: FlattenPreview) -> str:
    if p.flatten_running:
        return "A flatten is already running; confirming joins it."
    market = "open" if p.market_open else "CLOSED (orders queue for the open)"
    lines = [
        f"Flatten will close {count(len(p.positions), 'position')}"
        f" (~{fmt.money(p.gross_notional)}) and cancel {count(p.open_orders, 'open order')}.",
        f"Market {market}.",
    ]
    lines.extend(position_line(pos) for pos in p.positions[:10])
    if len(p.positions) > 10:
        lines.append(f"…and {len(p.positions) - 10} more")
    return "\n".join(lines)


def render_resume_preview(p: ResumePreview) -> str:
    lines = [
        f"Resume trading from {p.record.state.value} (set by {who(p.record.actor)}: "
        f"{p.record.reason}).",
        f"{count(p.positions, 'position')} · {count(p.open_orders, 'open order')} · "
        f"market {'open' if p.market_open else 'closed'}.",
    ]
    if p.paused_strategies:
        lines.append(f"Paused after an error, restarted too: {', '.join(p.paused_strategies)}.")
    if p.loss_limit_locked:
        lines.append("This is a loss-limit halt: only `resume override` lifts it today.")
    return "\n".join(lines)


def trade_line(t: TradeView) -> str:
    verb = "Bought" if t.side is Side.BUY else "Sold"
    when = t.ts.astimezone(NEW_YORK).strftime("%H:%M:%S")
    line = f"{when} {verb} {fmt.qty(t.qty)} {t.symbol} @ {fmt.price(t.price)}"
    if t.closing:
        line += f" · realized {fmt.signed_money(t.realized_pnl)}"
    return line


def render_trades(trades: list[TradeView]) -> str:
    if not trades:
        return "No fills today."
    return "\n".join(trade_line(t) for t in trades)


def audit_line(a: AuditView) -> str:
    when = a.ts.astimezone(NEW_YORK).strftime("%m-%d %H:%M:%S")
    args = f" {a.args}" if a.args else ""
    mark = "✅" if a.ok else "⛔"
    return f"{when} {mark} {who(a.actor)}: {a.command}{args} → {a.result}"


def render_audit(rows: list[AuditView]) -> str:
    if not rows:
        return "No commands recorded yet."
    return "\n".join(audit_line(a) for a in rows)
