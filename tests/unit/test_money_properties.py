"""Property tests of the money rules (hypothesis): random fill sequences against an
independent recomputation in Decimal."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, localcontext
from fractions import Fraction

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.broker.sim import to_trade_update
from engine.calendar import MarketCalendar
from engine.clock import TestClock
from engine.domain import Fill, Side, money
from engine.portfolio import Portfolio
from engine.sim.exchange import SimExchange
from engine.sim.models import CommissionModel, SlippageModel, TradeUpdateRecord
from tests.unit.test_portfolio import fill

D = Decimal
SYMBOLS = ("AAA", "BBB", "PENY")

quantities = st.decimals(min_value=D("0.001"), max_value=D(500), places=3)
# Sub-cent prices below $1 (to the hundredth of a cent), cents above.
sub_dollar = st.decimals(min_value=D("0.0001"), max_value=D("0.9999"), places=4)
prices = st.one_of(sub_dollar, st.decimals(min_value=D(1), max_value=D(2000), places=2))
fees = st.one_of(st.just(D(0)), st.decimals(min_value=D(0), max_value=D(5), places=2))


@st.composite
def book_events(draw: st.DrawFn) -> tuple[str, str, Side, Decimal, Decimal, Decimal]:
    kind = draw(st.sampled_from(("fill", "fill", "mark", "broker")))
    side = draw(st.sampled_from((Side.BUY, Side.SELL)))
    return (kind, draw(st.sampled_from(SYMBOLS)), side, draw(quantities), draw(prices), draw(fees))


@settings(max_examples=150, deadline=None)
@given(st.lists(book_events(), max_size=60))
def test_running_totals_when_fills_marks_and_broker_corrections_then_equal_the_full_sums(
    events: list[tuple[str, str, Side, Decimal, Decimal, Decimal]],
) -> None:
    book = Portfolio(cash=D(100_000))
    for kind, symbol, side, qty, price, fee in events:
        if kind == "fill":
            book.apply_fill(fill(side, str(qty), str(price), symbol, commission=str(fee)))
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


# -- the portfolio against an independent recomputation and the simulator's account ------

SESSION_TS = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # Tuesday 11:00 New York, open
CENT_F = Fraction(1, 100)


def settled(qty: Fraction, price: Fraction) -> Fraction:
    """Half a cent and more rounds up, in exact arithmetic (written apart from the code)."""
    cents = qty * price / CENT_F
    whole = int(cents)
    return Fraction(whole + (1 if cents - whole >= Fraction(1, 2) else 0), 100)


class Reference:
    """Average cost kept as a cost basis, in exact fractions: the textbook way, written
    independently of ``engine.portfolio``."""

    def __init__(self, cash: Decimal) -> None:
        self.cash = Fraction(cash)
        self.qty: dict[str, Fraction] = {}
        self.basis: dict[str, Fraction] = {}  # signed: qty * average cost
        self.realized = Fraction(0)

    def fill(self, fill: Fill) -> None:
        qty, price = Fraction(fill.qty), Fraction(fill.price)
        signed = qty if fill.side is Side.BUY else -qty
        self.cash -= (settled(qty, price) if signed > 0 else -settled(qty, price)) + Fraction(
            fill.commission
        )
        held = self.qty.get(fill.symbol, Fraction(0))
        basis = self.basis.get(fill.symbol, Fraction(0))
        if held == 0 or (held > 0) == (signed > 0):
            held, basis = held + signed, basis + signed * price
        else:
            closing = min(abs(signed), abs(held)) * (1 if signed > 0 else -1)
            average = basis / held
            self.realized += -closing * (price - average)
            held, basis = held + closing, basis + closing * average
            rest = signed - closing
            if rest != 0:  # crossed zero: the rest opens at this price
                event("a fill flips a position")
                held, basis = rest, rest * price
        self.qty[fill.symbol], self.basis[fill.symbol] = held, basis

    def average(self, symbol: str) -> Fraction:
        held = self.qty.get(symbol, Fraction(0))
        return self.basis[symbol] / held if held else Fraction(0)


@st.composite
def market_actions(draw: st.DrawFn) -> tuple[str, str, Side, Decimal]:
    symbol = draw(st.sampled_from(SYMBOLS))
    if draw(st.integers(0, 4)) < 2:  # two in five actions move a price, the rest trade
        return ("price", symbol, Side.BUY, draw(sub_dollar if symbol == "PENY" else prices))
    qty = draw(
        st.one_of(
            st.integers(min_value=1, max_value=40).map(Decimal),
            st.decimals(min_value=D("0.001"), max_value=D(25), places=3),
        )
    )
    return ("order", symbol, draw(st.sampled_from((Side.BUY, Side.SELL))), qty)


def close_to(value: Decimal, exact: Fraction) -> bool:
    """Equal far below a cent: only the 28-digit rounding of divisions may differ."""
    return abs(Fraction(value) - exact) < Fraction(1, 10**12)


@settings(max_examples=120, deadline=None)
@given(
    actions=st.lists(market_actions(), min_size=5, max_size=50),
    bps=st.sampled_from((D(0), D(5), D(25))),
    per_share=st.sampled_from((D(0), D("0.005"))),
    minimum=st.sampled_from((D(0), D(1))),
    max_fill=st.sampled_from((D(0), D(3), D(7))),
)
def test_portfolio_when_random_fills_then_matches_recomputation_and_simulator_to_the_cent(
    actions: list[tuple[str, str, Side, Decimal]],
    bps: Decimal,
    per_share: Decimal,
    minimum: Decimal,
    max_fill: Decimal,
) -> None:
    start = D(10_000_000)
    exchange = SimExchange(
        None,
        starting_cash=start,
        slippage=SlippageModel(bps),
        commission=CommissionModel(per_share=per_share, minimum=minimum),
        max_fill_qty=max_fill,
        calendar=MarketCalendar(),
        clock=TestClock(SESSION_TS),
    )
    book, reference = Portfolio(cash=start), Reference(start)
    fills: list[Fill] = []

    def on_update(record: TradeUpdateRecord) -> None:
        fill = to_trade_update(record).to_fill()
        if record.event == "partial_fill":
            event("a partial fill")
        if fill is not None:
            if fill.price * 100 != (fill.price * 100).to_integral_value():
                event("a sub-cent fill price")
            fills.append(fill)
            book.apply_fill(fill)
            reference.fill(fill)

    exchange.set_listener(on_update)
    for kind, symbol, side, amount in actions:
        if kind == "price":
            exchange.on_price(symbol, amount, SESSION_TS)
            book.mark(symbol, amount)
        else:
            exchange.submit(symbol, side, amount)
    for symbol in SYMBOLS:  # the next tick marks every symbol at its market price
        last = exchange.last_price(symbol)
        if last is not None:
            book.mark(symbol, last)

    # The book against the independent recomputation.
    assert book.cash == reference.cash  # exact: both settle every fill to the cent
    marks: dict[str, Fraction] = {}
    for symbol in SYMBOLS:
        held = reference.qty.get(symbol, Fraction(0))
        assert book.qty(symbol) == held
        position = book.position(symbol)
        if held:
            assert position is not None
            assert close_to(position.avg_price, reference.average(symbol))
            marks[symbol] = Fraction(position.last_price or position.avg_price)
    summary = book.summary()
    assert close_to(summary.realized, reference.realized)
    unrealized = sum(
        ((marks[s] - reference.average(s)) * reference.qty[s] for s in marks), Fraction(0)
    )
    assert close_to(summary.unrealized, unrealized)
    assert summary.commissions == sum((f.commission for f in fills), D(0))
    equity = reference.cash + sum((marks[s] * reference.qty[s] for s in marks), Fraction(0))
    assert money(book.equity) == money(Decimal(equity.numerator) / Decimal(equity.denominator))

    # The book against the simulator's account after settlement.
    account = exchange.account()
    assert book.cash == account.cash
    assert money(book.equity) == account.equity
    venue = {p.symbol: p for p in exchange.positions()}
    assert set(venue) == {s for s in SYMBOLS if book.qty(s) != 0}
    for symbol, held in venue.items():
        position = book.position(symbol)
        assert position is not None
        assert position.qty == held.qty
        assert close_to(position.avg_price, Fraction(held.avg_entry_price))
