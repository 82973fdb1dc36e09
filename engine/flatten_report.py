"""What a flatten tells the trader: its progress, and per symbol what became of the book.

``Closes`` counts the book's symbols as they close, one fill at a time (no rescan of the book
per update), so progress costs the same at 10 positions and at 2,000.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from engine.clock import et_minute
from engine.domain import ZERO
from engine.events import FillReceived


@dataclass(frozen=True, slots=True)
class FlattenProgress:
    phase: str
    """``closing``, ``confirming``, ``retrying`` or ``done``."""
    total: int
    done: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class SymbolOutcome:
    symbol: str
    qty_before: Decimal
    status: str
    """``closed``, ``queued`` (market closed: fills at the open), ``failed`` or ``open``."""
    qty_left: Decimal = ZERO
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FlattenReport:
    actor: str
    started_at: datetime
    flat: bool
    elapsed_s: float
    outcomes: list[SymbolOutcome]
    open_orders_left: int
    market_open: bool
    next_open: datetime | None = None
    joined: bool = False
    """True when this caller joined a flatten that was already running."""
    notes: list[str] = field(default_factory=list)
    market_note: str = ""
    """With the market closed, the one sentence saying so and when the close orders fill
    (``market_closed_note``); shown as it is, once."""

    @property
    def leftovers(self) -> list[SymbolOutcome]:
        return [o for o in self.outcomes if o.status != "closed"]


ProgressCallback = Callable[[FlattenProgress], Awaitable[None]]


class Closes:
    """The symbols held when the flatten started, ticked off as they close: by their fills
    (``on_fill``, a ``FillReceived`` handler) or by the broker's word (``confirmed``)."""

    def __init__(self, before: dict[str, Decimal]) -> None:
        self.total = len(before)
        self._open = {symbol for symbol, qty in before.items() if qty != ZERO}

    @property
    def done(self) -> int:
        return self.total - len(self._open)

    @property
    def all_closed(self) -> bool:
        return not self._open

    def on_fill(self, event: FillReceived) -> None:
        if event.position_qty == ZERO:
            self._open.discard(event.fill.symbol)

    def confirmed(self, still_open: Iterable[str]) -> None:
        """The broker says only ``still_open`` symbols still hold a position."""
        self._open.intersection_update(still_open)


def outcomes(
    before: dict[str, Decimal], leftover: dict[str, Decimal] | None, errors: dict[str, str]
) -> list[SymbolOutcome]:
    """Per symbol, from the broker's leftovers (None: the broker could not be asked)."""
    result = []
    for symbol in sorted(set(before) | set(leftover or {})):
        qty_before = before.get(symbol, ZERO)
        if leftover is None:
            result.append(
                SymbolOutcome(symbol, qty_before, "failed", qty_before, errors.get("*", ""))
            )
        elif symbol in leftover:
            detail = errors.get(symbol, "still open at the deadline")
            result.append(SymbolOutcome(symbol, qty_before, "failed", leftover[symbol], detail))
        else:
            result.append(SymbolOutcome(symbol, qty_before, "closed"))
    return result


def market_closed_note(next_open: datetime | None) -> str:
    """The report's one word on a closed market (its symbols do not repeat it)."""
    when = et_minute(next_open) if next_open is not None else "the next open"
    return f"Market closed: close orders queued, they fill at {when}."


def queued_outcomes(before: dict[str, Decimal], queued: set[str]) -> list[SymbolOutcome]:
    """Market closed: a symbol with a close order waiting for the open, or none accepted."""
    return [
        SymbolOutcome(
            symbol,
            qty,
            "queued" if symbol in queued else "open",
            qty_left=qty,
            detail="close order queued for the open"
            if symbol in queued
            else "no close order accepted",
        )
        for symbol, qty in before.items()
    ]
