"""What each engine event means for the trader: which channel, how urgent, what to say.

Pure functions from events to ``AlertMessage``s; transports (Discord, console) only deliver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bot import fmt
from bot.text import who
from engine.domain import OrderStatus, Side, TradingState
from engine.events import (
    CommandAudited,
    ConnectionChanged,
    EngineError,
    Event,
    FillReceived,
    Notice,
    OrderUpdated,
    ReconcileDrift,
    RiskRejected,
    Severity,
    TradingStateChanged,
)
from engine.risk.gate import RejectReason


class Channel(StrEnum):
    HEARTBEAT = "heartbeat"
    SYSTEM_ALERTS = "system-alerts"
    TRADES = "trades"
    REPORTS = "reports"


@dataclass(frozen=True, slots=True)
class AlertMessage:
    channel: Channel
    severity: Severity
    text: str
    kind: str
    """What sort of message this is (``fill``, ``reject``, ``state``...): bursts of one kind
    coalesce."""
    title: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    attachment: bytes | None = None
    attachment_name: str = ""

    @property
    def critical(self) -> bool:
        return self.severity is Severity.CRITICAL


_STATE_SEVERITY = {
    TradingState.HALTED: Severity.CRITICAL,
    TradingState.REDUCING: Severity.WARNING,
    TradingState.ACTIVE: Severity.INFO,
}
_STATE_ICON = {TradingState.HALTED: "🔴", TradingState.REDUCING: "🟡", TradingState.ACTIVE: "🟢"}


_STATE_REFUSALS = frozenset(
    {RejectReason.HALTED.value, RejectReason.REDUCING_ONLY.value, RejectReason.MARKET_CLOSED.value}
)
"""Refusals that follow from the trading state or the clock, not from a limit: a strategy
signalling through a long REDUCING (a full disk) or a halt would otherwise fill
#system-alerts with one line per bar. They stay in #trades."""


def describe(event: Event) -> list[AlertMessage]:
    """The messages an event produces (none for events the trader need not see)."""
    if isinstance(event, TradingStateChanged):
        return [_state(event)]
    if isinstance(event, FillReceived):
        return [_fill(event)]
    if isinstance(event, OrderUpdated):
        return _order(event)
    if isinstance(event, RiskRejected):
        text = (
            f"⛔ Risk refused {event.side.value} {fmt.qty(event.qty)} {event.symbol}: "
            f"{event.reason} ({event.detail})"
        )
        trades = AlertMessage(Channel.TRADES, Severity.INFO, text, "risk-reject")
        if event.reason in _STATE_REFUSALS:  # the state change itself was announced there
            return [trades]
        return [trades, AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, "risk-reject")]
    if isinstance(event, ReconcileDrift):
        text = (
            f"🧮 Drift corrected ({event.kind} {event.key}): local {event.local} → "
            f"broker {event.broker}"
        )
        return [AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, "drift")]
    if isinstance(event, ConnectionChanged):
        if event.up:
            text = f"🔌 {event.component} reconnected" + (
                f": {event.detail}" if event.detail else ""
            )
            return [AlertMessage(Channel.SYSTEM_ALERTS, Severity.INFO, text, "connection")]
        text = f"🔌 {event.component} DISCONNECTED" + (f": {event.detail}" if event.detail else "")
        return [AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, "connection")]
    if isinstance(event, EngineError):
        icon = "🚨" if event.severity is Severity.CRITICAL else "⚠️"
        text = f"{icon} {event.component}: {event.message}"
        return [
            AlertMessage(Channel.SYSTEM_ALERTS, event.severity, text, f"error-{event.component}")
        ]
    if isinstance(event, CommandAudited):
        return _audit(event)
    if isinstance(event, Notice):
        return [
            AlertMessage(
                _notice_channel(event.kind),
                event.severity,
                event.text,
                event.kind,
                title=event.title,
                fields=dict(event.fields),
                attachment=event.attachment,
                attachment_name=event.attachment_name,
            )
        ]
    return []


def _state(event: TradingStateChanged) -> AlertMessage:
    icon = _STATE_ICON[event.new]
    by = who(event.actor)
    text = f"{icon} {event.new.value} (was {event.old.value}) by {by}: {event.reason}"
    if event.cause not in ("manual", "flatten"):
        text += f" [{event.cause}]"
    return AlertMessage(Channel.SYSTEM_ALERTS, _STATE_SEVERITY[event.new], text, "state")


def _fill(event: FillReceived) -> AlertMessage:
    f = event.fill
    verb = "Bought" if f.side is Side.BUY else "Sold"
    text = (
        f"✅ {verb} {fmt.qty(f.qty)} {f.symbol} @ {fmt.price(f.price)} · "
        f"position {fmt.signed_qty(event.position_qty)}"
    )
    if event.realized_pnl:
        text += f" · realized {fmt.signed_money(event.realized_pnl)}"
    return AlertMessage(Channel.TRADES, Severity.INFO, text, "fill")


def _order(event: OrderUpdated) -> list[AlertMessage]:
    what = f"{event.side.value} {fmt.qty(event.qty)} {event.symbol}"
    if event.status is OrderStatus.REJECTED:
        text = f"❌ Broker rejected {what}: {event.reason or 'no reason given'}"
        return [
            AlertMessage(Channel.TRADES, Severity.INFO, text, "reject"),
            AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, "reject"),
        ]
    if event.status is OrderStatus.SUBMITTED:
        by = f" ({event.strategy})" if event.strategy else ""
        return [AlertMessage(Channel.TRADES, Severity.INFO, f"📤 {what}{by} sent", "order")]
    if event.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        filled = f", {fmt.qty(event.filled_qty)} filled" if event.filled_qty else ""
        text = f"↩️ {what} {event.status.value}{filled}"
        return [AlertMessage(Channel.TRADES, Severity.INFO, text, "order")]
    return []


def _audit(event: CommandAudited) -> list[AlertMessage]:
    if not event.control:
        return []
    args = f" {event.args}" if event.args else ""
    if event.ok:
        text = f"🛂 !{event.command}{args} by {who(event.actor)}: {event.result}"
        return [AlertMessage(Channel.SYSTEM_ALERTS, Severity.INFO, text, "audit")]
    text = f"🛂 !{event.command}{args} by {who(event.actor)} refused: {event.result}"
    return [AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, "audit")]


def _notice_channel(kind: str) -> Channel:
    if kind == "heartbeat":
        return Channel.HEARTBEAT
    if kind in ("report", "market-open", "end-of-day"):
        return Channel.REPORTS
    return Channel.SYSTEM_ALERTS
