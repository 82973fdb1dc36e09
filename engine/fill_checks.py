"""Checks on a broker update before anything of it is committed or applied.

Two levels. Every execution, whatever brought it (the stream, REST recovery, start-up), must
be one a book can take (``fill_refusal``: positive finite quantity and price, commission >= 0,
an aware time). A fill on the trade-update stream must also fit what we know
(``fill_update_refusal``): an order we know (or a close order the broker creates for a flatten
we are running), a symbol we trade or hold, matching the order, and a cumulative filled
quantity that does not go backwards. An update that fails is refused; REST recovery then asks
the broker for the truth, and REST answers only get the first level of checks: the broker's
REST view is the truth we reconcile to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.broker.port import TradeUpdate
from engine.domain import ZERO, Fill
from engine.orders import Order
from engine.portfolio import check_fill

FILL_EVENTS = frozenset({"fill", "partial_fill"})


def fill_refusal(fill: Fill) -> str | None:
    """Why no book can take this execution, or None."""
    try:
        check_fill(fill)
    except (ValueError, TypeError, ArithmeticError) as exc:
        return f"execution {fill.execution_id}: {exc}"
    return None


@dataclass(frozen=True, slots=True)
class FillCheck:
    fill: Fill | None
    """The execution the update reports (None when it does not even carry one)."""
    refusal: str | None
    """Why it must not be applied, or None."""


def check_fill_update(
    update: TradeUpdate,
    order: Order | None,
    *,
    adopt_unknown: bool,
    symbol_known: Callable[[str], bool],
) -> FillCheck:
    """Check a fill or partial_fill update from the stream. ``order`` is ours (None when we do
    not know it); ``adopt_unknown`` is True while the broker creates orders for us
    (close-all); ``symbol_known`` says whether we trade or hold a symbol."""
    record = update.order
    try:
        fill = update.to_fill()
    except ValueError as exc:
        return FillCheck(None, str(exc))
    if fill is None:
        return FillCheck(None, f"{update.event} update for {record.client_order_id} is no fill")
    if (refused := fill_refusal(fill)) is not None:
        return FillCheck(fill, refused)
    if not symbol_known(fill.symbol):
        return FillCheck(fill, f"fill for {fill.symbol!r}, a symbol we neither trade nor hold")
    if order is None:
        if adopt_unknown:
            return FillCheck(fill, None)
        return FillCheck(fill, f"fill for order {record.client_order_id!r}, which we do not know")
    mine = (fill.client_order_id, fill.symbol, fill.side)
    if mine != (order.client_order_id, order.symbol, order.side):
        return FillCheck(
            fill,
            f"fill ({fill.client_order_id}: {fill.side.value} {fill.symbol}) does not match "
            f"order {order.client_order_id} ({order.side.value} {order.symbol})",
        )
    cumulative = record.filled_qty
    if not cumulative.is_finite() or cumulative < ZERO or cumulative < order.filled_qty:
        return FillCheck(
            fill,
            f"order {order.client_order_id}: cumulative filled qty {cumulative} goes back "
            f"from the {order.filled_qty} already applied",
        )
    return FillCheck(fill, None)
