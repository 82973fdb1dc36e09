from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from engine.domain import Exposure

D = Decimal


def test_exposure_when_a_long_and_a_short_are_marked_then_the_same_as_revalued_by_value() -> None:
    by_mark, by_value = Exposure(), Exposure()
    for book in (by_mark, by_value):
        book.revalued(D(0), D("1000.00"))  # long 10 @ 100
        book.revalued(D(0), D("-500.00"))  # short 5 @ 100

    by_mark.marked(D(10), D(100), D("101.25"))
    by_mark.marked(D(-5), D(100), D("98.5"))
    by_value.revalued(D("1000.00"), D(10) * D("101.25"))
    by_value.revalued(D("-500.00"), D(-5) * D("98.5"))

    assert (by_mark.net, by_mark.gross) == (by_value.net, by_value.gross)
    assert (by_mark.net, by_mark.gross) == (D("520.00"), D("1505.00"))


def test_exposure_when_reset_then_the_sums_of_the_values_given() -> None:
    totals = Exposure()
    totals.revalued(D(0), D(7))

    totals.reset([D("1000.00"), D("-492.50")])

    assert (totals.net, totals.gross) == (D("507.50"), D("1492.50"))


def test_exposure_when_a_position_flips_from_long_to_short_then_each_side_moves() -> None:
    totals = Exposure()
    totals.revalued(D(0), D("1000.00"))  # long 10 @ 100

    totals.revalued(D("1000.00"), D("-300.00"))  # sold 13: short 3 @ 100
    totals.marked(D(-3), D(100), D(110))

    assert (totals.net, totals.gross) == (D("-330.00"), D("330.00"))
    assert (totals.long, totals.short) == (D(0), D("-330.00"))


def test_exposure_when_reset_with_values_far_apart_then_exact() -> None:
    totals = Exposure()

    totals.reset([D("1E+30"), D("0.01"), D("-0.02")])  # 33 digits: more than a default context

    assert totals.net == D("999999999999999999999999999999.99")
    assert totals.gross == D("1000000000000000000000000000000.03")


prices = st.decimals(min_value=D("0.01"), max_value=D("5000"), places=2)
quantities = st.decimals(min_value=D(-1000), max_value=D(1000), places=3)


@given(st.lists(st.tuples(quantities, st.lists(prices, min_size=1, max_size=8)), max_size=8))
def test_exposure_when_positions_are_marked_bar_by_bar_then_the_exact_sums_of_their_values(
    book: list[tuple[Decimal, list[Decimal]]],
) -> None:
    totals = Exposure()
    for qty, path in book:
        totals.revalued(D(0), qty * path[0])
        for old, new in pairwise(path):
            totals.marked(qty, old, new)

    values = [qty * path[-1] for qty, path in book]
    assert totals.net == sum(values, D(0))
    assert totals.gross == sum((abs(v) for v in values), D(0))
