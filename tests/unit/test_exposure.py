from __future__ import annotations

from decimal import Decimal

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
