"""What the simulator state SIGKILL test and its child share."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from engine.calendar import MarketCalendar
from engine.clock import Clock
from engine.sim.exchange import SimExchange
from engine.sim.models import CommissionModel, SlippageModel

START = datetime(2026, 3, 10, 13, 30, tzinfo=UTC)  # a Tuesday's open (09:30 New York)
SYMBOLS = ("AAPL", "MSFT", "SPY", "QQQ")
STARTING_CASH = Decimal("1000000")


def make_exchange(path: Path, clock: Clock) -> SimExchange:
    return SimExchange(
        path,
        starting_cash=STARTING_CASH,
        slippage=SlippageModel(Decimal(2)),
        commission=CommissionModel(per_share=Decimal("0.005"), minimum=Decimal(1)),
        calendar=MarketCalendar(),
        clock=clock,
    )
