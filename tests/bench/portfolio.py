"""Portfolio benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.portfolio [--sizes 100 500 1000 2000] [--runs 3]

A flatten of N positions as the portfolio sees it: N closing fills, each followed by what the
engine does on every trade update (the loss-limit check reads the day's P&L, i.e. equity).
Timed side by side in one run: the running totals the portfolio keeps, and the sum over every
position that each read used to compute (the same book, the same fills).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

from engine.domain import ZERO, Fill, Side
from engine.portfolio import Portfolio

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _fill(n: int, side: Side, price: Decimal) -> Fill:
    return Fill(f"x{side}{n}", f"c{side}{n}", f"b{side}{n}", f"S{n}", side, Decimal(10), price, T0)


def _book(size: int) -> Portfolio:
    book = Portfolio(cash=Decimal(10_000_000))
    book.start_day(date(2026, 3, 2), Decimal(10_000_000))
    for n in range(size):
        book.apply_fill(_fill(n, Side.BUY, Decimal(100) + Decimal(n) / 100))
    return book


def running_total(book: Portfolio) -> Decimal | None:
    return book.day_pnl


def full_sum(book: Portfolio) -> Decimal | None:
    """What each read computed before the totals were kept: a sum over every position (the
    same loop the old property ran, over the portfolio's own states)."""
    states = book._positions.values()
    equity = book.cash + sum((s.market_value for s in states), ZERO)
    return None if book.day_start_equity is None else equity - book.day_start_equity


def flatten_seconds(size: int, read: Callable[[Portfolio], Decimal | None]) -> float:
    book = _book(size)
    started = time.perf_counter()
    for n in range(size):
        book.apply_fill(_fill(n, Side.SELL, Decimal(99)))
        read(book)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| positions | running totals | sum per read | ratio |")
    print("|---|---|---|---|")
    for size in args.sizes:
        ours = statistics.median(flatten_seconds(size, running_total) for _ in range(args.runs))
        old = statistics.median(flatten_seconds(size, full_sum) for _ in range(args.runs))
        print(f"| {size:,} | {ours * 1000:.1f} ms | {old * 1000:.1f} ms | {old / ours:.0f}x |")


if __name__ == "__main__":
    main()
