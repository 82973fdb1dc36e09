"""Property tests of the money rules (hypothesis): random fill sequences against an
independent recomputation in Decimal."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import Fill, Side
from engine.portfolio import Portfolio

D = Decimal
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SYMBOLS = ("AAA", "BBB", "PENY")
_ids = itertools.count(1)

quantities = st.decimals(min_value=D("0.001"), max_value=D(500), places=3)
# Sub-cent prices below $1 (to the hundredth of a cent), cents above.
prices = st.one_of(
    st.decimals(min_value=D("0.0001"), max_value=D("0.9999"), places=4),
    st.decimals(min_value=D(1), max_value=D(2000), places=2),
)
fees = st.one_of(st.just(D(0)), st.decimals(min_value=D(0), max_value=D(5), places=2))


@st.composite
def book_events(draw: st.DrawFn) -> tuple[str, str, Side, Decimal, Decimal, Decimal]:
    kind = draw(st.sampled_from(("fill", "fill", "mark", "broker")))
    side = draw(st.sampled_from((Side.BUY, Side.SELL)))
    return (kind, draw(st.sampled_from(SYMBOLS)), side, draw(quantities), draw(prices), draw(fees))


def make_fill(symbol: str, side: Side, qty: Decimal, price: Decimal, fee: Decimal) -> Fill:
    n = next(_ids)
    return Fill(
        execution_id=f"x{n}",
        client_order_id=f"c{n}",
        broker_order_id=f"b{n}",
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
        ts=T0 + timedelta(seconds=n),
        commission=fee,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(book_events(), max_size=60))
def test_running_totals_when_fills_marks_and_broker_corrections_then_equal_the_full_sums(
    events: list[tuple[str, str, Side, Decimal, Decimal, Decimal]],
) -> None:
    book = Portfolio(cash=D(100_000))
    for kind, symbol, side, qty, price, fee in events:
        if kind == "fill":
            book.apply_fill(make_fill(symbol, side, qty, price, fee))
        elif kind == "mark":
            book.mark(symbol, price)
        else:  # the broker's view replaces ours (a reconcile)
            book.set_position(symbol, side.sign * qty, price)

    positions = [book.position(s) for s in SYMBOLS]
    with localcontext(prec=200):  # exact: nothing here rounds
        net = sum((p.market_value for p in positions if p is not None), D(0))
        gross = sum((abs(p.market_value) for p in positions if p is not None), D(0))
        equity = book.cash + net
    assert book.net_exposure == net
    assert book.gross_exposure == gross
    assert book.equity == equity
