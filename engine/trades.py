"""A trading day's fills, each with the P&L it realized: the read model behind the command
service's ``trades`` call (the end-of-day report, ``!trades``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from engine.clock import trading_day
from engine.domain import Fill, Side
from engine.portfolio import Portfolio


@dataclass(frozen=True, slots=True)
class TradeView:
    ts: datetime
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    commission: Decimal
    client_order_id: str
    closing: bool
    """The fill reduced or closed a position (a trade's exit)."""
    realized_pnl: Decimal
    """What this fill realized under the engine's average-cost accounting, gross of fees."""


def day_trades(fills: Iterable[Fill], day: date) -> list[TradeView]:
    """Trading day ``day``'s fills, oldest first. Every earlier fill is replayed too: it gives
    the cost basis of a position carried into the day."""
    book = Portfolio()
    views = []
    for fill in sorted(fills, key=lambda f: f.ts):
        before = book.qty(fill.symbol)
        realized = book.apply_fill(fill)
        if trading_day(fill.ts) != day:
            continue
        views.append(
            TradeView(
                ts=fill.ts,
                symbol=fill.symbol,
                side=fill.side,
                qty=fill.qty,
                price=fill.price,
                commission=fill.commission,
                client_order_id=fill.client_order_id,
                closing=before != 0 and (before > 0) != (fill.signed_qty > 0),
                realized_pnl=realized,
            )
        )
    return views
