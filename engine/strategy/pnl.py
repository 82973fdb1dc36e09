"""P&L per strategy: the portfolio grouped by the strategy owning each symbol (a symbol
belongs to one strategy, so nothing is split or shared). The account's own figures (cash,
equity, day P&L, the risk limits) stay account-wide."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from engine.domain import ZERO
from engine.portfolio import PnLSummary, Portfolio

UNASSIGNED = ""
"""The group of symbols no configured strategy trades (positions adopted from the broker,
or opened by hand)."""


@dataclass(frozen=True, slots=True)
class StrategyPnL:
    """One strategy's share of the book. Realized figures are gross of commissions, as in
    ``PnLSummary``; ``day_realized`` counts today's fills only."""

    strategy: str
    positions: int
    market_value: Decimal
    unrealized: Decimal
    day_realized: Decimal
    realized: Decimal
    commissions: Decimal


def pnl_by_strategy(
    summary: PnLSummary,
    portfolio: Portfolio,
    owners: Mapping[str, str],
    order: Sequence[str] = (),
) -> list[StrategyPnL]:
    """One row per strategy in ``order`` (then any other owner), then the unassigned
    symbols if there are any. ``summary`` holds today's rows; symbols flat and untouched
    today still bring their lifetime realized P&L from ``portfolio``."""
    rows: dict[str, list[Decimal]] = {name: [ZERO] * 6 for name in order}
    seen: set[str] = set()
    for row in summary.by_symbol:
        seen.add(row.symbol)
        totals = rows.setdefault(owners.get(row.symbol, UNASSIGNED), [ZERO] * 6)
        totals[0] += row.qty != ZERO
        totals[1] += row.market_value
        totals[2] += row.unrealized_pnl
        totals[3] += row.day_realized_pnl
        totals[4] += row.realized_pnl
        totals[5] += row.commissions
    for symbol, owner in owners.items():
        state = None if symbol in seen else portfolio.position(symbol)
        if state is not None:
            totals = rows.setdefault(owner, [ZERO] * 6)
            totals[4] += state.realized_pnl
            totals[5] += state.commissions
    unassigned = rows.pop(UNASSIGNED, None)
    result = [StrategyPnL(name, int(t[0]), *t[1:]) for name, t in rows.items()]
    if unassigned is not None:
        result.append(StrategyPnL(UNASSIGNED, int(unassigned[0]), *unassigned[1:]))
    return result
