"""The venue behind the fake: a ``SimExchange`` and, for demos, an always-open calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

from engine.calendar import MarketCalendar
from engine.clock import NEW_YORK, Clock
from engine.domain import ZERO, TradingSession
from engine.sim.exchange import SimExchange
from engine.sim.models import CommissionModel, SlippageModel

ALWAYS_OPEN_START = time(0, 0)
ALWAYS_OPEN_END = time(23, 59, 59)


class AlwaysOpenCalendar(MarketCalendar):
    """Every calendar day is a session from 00:00 to 23:59:59 New York time, so demos
    trade on weekends, holidays and at night. Everything else is ``MarketCalendar``'s."""

    def session(self, day: date) -> TradingSession | None:
        return TradingSession(
            day=day,
            open=datetime.combine(day, ALWAYS_OPEN_START, tzinfo=NEW_YORK).astimezone(UTC),
            close=datetime.combine(day, ALWAYS_OPEN_END, tzinfo=NEW_YORK).astimezone(UTC),
        )


def build_exchange(
    *,
    clock: Clock,
    starting_cash: Decimal = Decimal(100_000),
    always_open: bool = False,
    max_fill_qty: Decimal = ZERO,
    slippage_bps: Decimal = ZERO,
    commission: CommissionModel | None = None,
    state_path: Path | None = None,
) -> SimExchange:
    """A ``SimExchange`` as the fake builds it: commission-free and slippage-free like an
    Alpaca paper account unless told otherwise; ``max_fill_qty`` > 0 gives partial fills."""
    calendar = AlwaysOpenCalendar() if always_open else MarketCalendar()
    return SimExchange(
        state_path,
        starting_cash=starting_cash,
        slippage=SlippageModel(slippage_bps),
        commission=commission or CommissionModel(),
        max_fill_qty=max_fill_qty,
        calendar=calendar,
        clock=clock,
    )
