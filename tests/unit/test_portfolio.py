"""Average-cost accounting, cash, equity and P&L of engine.portfolio.Portfolio."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from engine.domain import Fill, Side
from engine.portfolio import Portfolio, PositionState

D = Decimal
# 15:00 UTC = 10:00 in New York (EST), trading day 2026-03-02.
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY1 = date(2026, 3, 2)
DAY2 = date(2026, 3, 3)
_ids = itertools.count(1)


def fill(
    side: Side,
    qty: str,
    price: str,
    symbol: str = "AAPL",
    *,
    ts: datetime = T0,
    commission: str = "0",
) -> Fill:
    n = next(_ids)
    return Fill(
        execution_id=f"x{n}",
        client_order_id=f"c{n}",
        broker_order_id=f"b{n}",
        symbol=symbol,
        side=side,
        qty=D(qty),
        price=D(price),
        ts=ts,
        commission=D(commission),
    )


BUY, SELL = Side.BUY, Side.SELL


def test_apply_fill_when_flat_and_buying_then_opens_long_at_fill_price() -> None:
    book = Portfolio(cash=D(10_000))

    realized = book.apply_fill(fill(BUY, "10", "100"))

    pos = book.position("AAPL")
    assert pos is not None
    assert realized == 0
    assert (pos.qty, pos.avg_price, pos.realized_pnl) == (D(10), D(100), D(0))
    assert pos.opened_at == T0
    assert pos.last_price == D(100)
    assert book.cash == D(9_000)  # 10_000 - 10*100
    assert book.qty("AAPL") == D(10)


def test_opened_at_when_unseen_open_added_to_and_closed_then_the_open_positions_start() -> None:
    book = Portfolio(cash=D(10_000))
    t1 = T0 + timedelta(minutes=5)
    assert book.opened_at("AAPL") is None

    book.apply_fill(fill(BUY, "10", "100"))
    book.apply_fill(fill(BUY, "5", "101", ts=t1))
    assert book.opened_at("AAPL") == T0

    book.apply_fill(fill(SELL, "15", "102", ts=t1))
    assert book.opened_at("AAPL") is None


def test_apply_fill_when_adding_to_long_at_another_price_then_re_averages() -> None:
    book = Portfolio()
    book.apply_fill(fill(BUY, "10", "100"))

    realized = book.apply_fill(fill(BUY, "30", "104", ts=T0 + timedelta(minutes=5)))

    pos = book.position("AAPL")
    assert pos is not None
    assert realized == 0
    assert pos.qty == D(40)
    assert pos.avg_price == D(103)  # (10*100 + 30*104) / 40 = 4120 / 40
    assert pos.opened_at == T0  # adding keeps the original open time


def test_apply_fill_when_selling_part_of_long_then_realizes_and_keeps_avg() -> None:
    book = Portfolio()
    book.apply_fill(fill(BUY, "10", "100"))
    book.apply_fill(fill(BUY, "30", "104"))

    realized = book.apply_fill(fill(SELL, "15", "110"))

    pos = book.position("AAPL")
    assert pos is not None
    assert realized == D(105)  # (110 - 103) * 15
    assert (pos.qty, pos.avg_price, pos.realized_pnl) == (D(25), D(103), D(105))
    assert pos.opened_at == T0


def test_apply_fill_when_selling_whole_long_then_flat_with_history_kept() -> None:
    book = Portfolio(cash=D(1_000))
    book.apply_fill(fill(BUY, "10", "100"))

    realized = book.apply_fill(fill(SELL, "10", "95"))

    pos = book.position("AAPL")
    assert pos is not None
    assert realized == D(-50)  # (95 - 100) * 10
    assert pos.is_flat
    assert (pos.qty, pos.avg_price, pos.opened_at) == (D(0), D(0), None)
    assert pos.realized_pnl == D(-50)
    assert book.positions() == []
    assert book.cash == D(950)  # 1000 - 1000 + 950


def test_apply_fill_when_shorting_adding_and_covering_then_realizes_from_short_side() -> None:
    book = Portfolio()

    r1 = book.apply_fill(fill(SELL, "10", "50"))
    r2 = book.apply_fill(fill(SELL, "10", "56"))
    after_add = book.position("AAPL")
    r3 = book.apply_fill(fill(BUY, "5", "48"))
    after_partial = book.position("AAPL")
    r4 = book.apply_fill(fill(BUY, "15", "55"))

    assert after_add is not None
    assert after_partial is not None
    assert (r1, r2) == (D(0), D(0))
    assert (after_add.qty, after_add.avg_price) == (D(-20), D(53))  # (500 + 560) / 20
    assert r3 == D(25)  # (53 - 48) * 5
    assert (after_partial.qty, after_partial.avg_price) == (D(-15), D(53))
    assert r4 == D(-30)  # (53 - 55) * 15
    assert book.qty("AAPL") == 0
    # No commissions: cash moved exactly by the realized total, +500 +560 -240 -825 = -5.
    assert book.cash == D(-5)
    assert book.summary().realized == D(-5)


def test_apply_fill_when_sell_crosses_zero_then_closes_long_and_opens_short() -> None:
    book = Portfolio(cash=D(10_000))
    book.apply_fill(fill(BUY, "10", "100"))
    t1 = T0 + timedelta(minutes=30)

    realized = book.apply_fill(fill(SELL, "25", "110", ts=t1))

    pos = book.position("AAPL")
    assert pos is not None
    assert realized == D(100)  # (110 - 100) * 10 closed; 15 opened short
    assert (pos.qty, pos.avg_price, pos.opened_at) == (D(-15), D(110), t1)
    assert book.cash == D(11_750)  # 10_000 - 1_000 + 25*110


def test_apply_fill_when_buy_crosses_zero_then_covers_short_and_opens_long() -> None:
    book = Portfolio()
    book.apply_fill(fill(SELL, "8", "20"))
    t1 = T0 + timedelta(minutes=30)

    realized = book.apply_fill(fill(BUY, "20", "18", ts=t1))

    pos = book.position("AAPL")
    assert pos is not None
    assert realized == D(16)  # (20 - 18) * 8
    assert (pos.qty, pos.avg_price, pos.opened_at) == (D(12), D(18), t1)


def test_apply_fill_when_commission_charged_then_cash_drops_and_avg_cost_ignores_it() -> None:
    book = Portfolio(cash=D(10_000))
    book.start_day(DAY1, D(10_000))

    book.apply_fill(fill(BUY, "10", "100", commission="1.25"))
    opened = book.position("AAPL")
    realized = book.apply_fill(fill(SELL, "10", "101", commission="1.25"))

    assert opened is not None
    assert opened.avg_price == D(100)  # not 100.125
    assert realized == D(10)  # gross: (101 - 100) * 10
    assert book.cash == D("10007.50")  # 10_000 - 1000 - 1.25 + 1010 - 1.25
    summary = book.summary()
    assert summary.realized == D(10)
    assert summary.commissions == D("2.50")
    assert summary.day_commissions == D("2.50")
    assert summary.by_symbol[0].commissions == D("2.50")
    assert summary.day_pnl == D("7.50")  # net of commissions through cash


def test_apply_fill_when_order_fills_in_parts_then_same_result_as_one_combined_fill() -> None:
    parts = Portfolio(cash=D(5_000))
    whole = Portfolio(cash=D(5_000))

    for qty, price in (("3", "10.00"), ("5", "10.40"), ("2", "10.10")):
        parts.apply_fill(fill(BUY, qty, price))
    whole.apply_fill(fill(BUY, "10", "10.22"))  # VWAP: (30 + 52 + 20.2) / 10
    realized_parts = parts.apply_fill(fill(SELL, "4", "11")) + parts.apply_fill(
        fill(SELL, "6", "10.50")
    )
    realized_whole = whole.apply_fill(fill(SELL, "10", "10.70"))  # (44 + 63) / 10

    assert realized_parts == realized_whole == D("4.80")  # (10.70 - 10.22) * 10
    assert parts.cash == whole.cash == D("5004.80")
    for book in (parts, whole):
        book.mark("AAPL", D(10))  # last prices differ (10.50 vs 10.70) only by construction
    assert parts.position("AAPL") == whole.position("AAPL")
    assert parts.summary() == whole.summary()


def test_mark_when_price_moves_then_unrealized_and_market_value_follow() -> None:
    book = Portfolio()
    book.apply_fill(fill(BUY, "10", "100"))
    book.apply_fill(fill(SELL, "4", "50", "TSLA"))

    at_fill = book.summary().unrealized
    book.mark("AAPL", D("107.5"))
    book.mark("TSLA", D(45))

    aapl, tsla = book.position("AAPL"), book.position("TSLA")
    assert aapl is not None
    assert tsla is not None
    assert at_fill == 0  # last price is the fill price
    assert aapl.unrealized_pnl == D(75)  # (107.5 - 100) * 10
    assert aapl.market_value == D(1075)
    assert tsla.unrealized_pnl == D(20)  # (45 - 50) * -4
    assert tsla.market_value == D(-180)
    assert book.summary().unrealized == D(95)
    assert book.last_price("AAPL") == D("107.5")


def test_mark_when_no_position_then_price_kept_for_a_later_position() -> None:
    book = Portfolio()

    book.mark("MSFT", D(300))
    before = book.position("MSFT")
    book.set_position("MSFT", D(2), D(290))

    pos = book.position("MSFT")
    assert before is None
    assert book.last_price("MSFT") == D(300)
    assert pos is not None
    assert pos.market_value == D(600)
    assert pos.unrealized_pnl == D(20)  # (300 - 290) * 2


def test_mark_when_price_not_positive_then_refused() -> None:
    book = Portfolio()

    with pytest.raises(ValueError, match="price"):
        book.mark("AAPL", D(0))

    assert book.last_price("AAPL") is None


def test_market_value_when_no_price_known_then_valued_at_cost_with_no_unrealized() -> None:
    book = Portfolio(cash=D(100))

    book.set_position("AAPL", D(-3), D(40))

    pos = book.position("AAPL")
    assert pos is not None
    assert pos.last_price is None
    assert pos.market_value == D(-120)
    assert pos.unrealized_pnl == 0
    assert book.equity == D(-20)  # 100 - 120


def test_equity_and_day_pnl_when_trading_across_two_days_then_measured_from_day_start() -> None:
    book = Portfolio(cash=D(10_000))
    assert book.summary().day_pnl is None  # no day started

    book.start_day(DAY1, D(10_000))
    book.apply_fill(fill(BUY, "10", "100"))  # cash 9_000
    book.mark("AAPL", D(105))
    mid_day1 = book.summary()
    book.apply_fill(fill(SELL, "5", "110", ts=T0 + timedelta(hours=2)))  # cash 9_550
    end_day1 = book.summary()
    book.start_day(DAY2, end_day1.equity)
    start_day2 = book.summary()
    book.apply_fill(fill(SELL, "5", "120", ts=T0 + timedelta(days=1)))  # cash 10_150
    end_day2 = book.summary()

    assert mid_day1.equity == D(10_050)  # 9_000 + 10*105
    assert mid_day1.day_pnl == D(50)
    assert end_day1.equity == D(10_100)  # 9_550 + 5*110
    assert end_day1.day_pnl == D(100)
    assert end_day1.day_realized == D(50)  # (110 - 100) * 5
    assert (start_day2.day_realized, start_day2.day_commissions) == (D(0), D(0))
    assert start_day2.day_pnl == D(0)
    assert start_day2.realized == D(50)  # lifetime survives the reset
    assert start_day2.by_symbol[0].day_realized_pnl == D(0)
    assert end_day2.day_realized == D(100)  # (120 - 100) * 5
    assert end_day2.realized == D(150)
    assert end_day2.equity == D(10_150)
    assert end_day2.day_start_equity == D(10_100)
    assert end_day2.day_pnl == D(50)


def test_day_realized_when_fills_fall_outside_the_day_then_not_counted() -> None:
    book = Portfolio()
    book.apply_fill(fill(BUY, "10", "100", ts=T0 - timedelta(days=1)))
    book.apply_fill(fill(SELL, "1", "101", ts=T0 - timedelta(days=1)))  # before any start_day
    book.start_day(DAY1, D(0))

    # 03:00 UTC on 3 March is 22:00 on 2 March in New York: still DAY1.
    book.apply_fill(fill(SELL, "2", "105", ts=datetime(2026, 3, 3, 3, 0, tzinfo=UTC)))
    # A late fill from the previous day and one from the next day do not count for DAY1.
    book.apply_fill(fill(SELL, "3", "110", ts=T0 - timedelta(days=1), commission="1"))
    book.apply_fill(fill(SELL, "4", "90", ts=T0 + timedelta(days=1), commission="1"))

    summary = book.summary()
    assert summary.day_realized == D(10)  # (105 - 100) * 2
    assert summary.day_commissions == 0
    assert summary.realized == D(1 + 10 + 30 - 40)
    assert summary.commissions == D(2)


def test_exposure_when_long_and_short_then_gross_adds_sizes_and_net_offsets() -> None:
    book = Portfolio(cash=D(10_000))
    book.apply_fill(fill(BUY, "10", "100", "AAPL"))  # cash 9_000
    book.apply_fill(fill(SELL, "5", "200", "TSLA"))  # cash 10_000
    book.mark("AAPL", D(110))  # +1_100
    book.mark("TSLA", D(180))  # -900

    summary = book.summary()

    assert book.gross_exposure == summary.gross_exposure == D(2_000)
    assert book.net_exposure == summary.net_exposure == D(200)
    assert book.equity == summary.equity == D(10_200)


def test_summary_when_several_symbols_then_rows_sorted_by_absolute_market_value() -> None:
    book = Portfolio(cash=D(50_000))
    book.apply_fill(fill(BUY, "1", "10", "NVDA", ts=T0 - timedelta(days=1)))
    book.apply_fill(fill(SELL, "1", "12", "NVDA", ts=T0 - timedelta(days=1)))  # closed yesterday
    book.start_day(DAY1, D(50_000))
    book.apply_fill(fill(BUY, "10", "100", "AAPL"))  # +1_000
    book.apply_fill(fill(SELL, "10", "200", "TSLA"))  # -2_000
    book.apply_fill(fill(BUY, "5", "300", "MSFT"))
    book.apply_fill(fill(SELL, "5", "310", "MSFT"))  # closed today, +50
    book.apply_fill(fill(BUY, "2", "150", "AMZN"))  # +300

    rows = book.summary().by_symbol

    assert [r.symbol for r in rows] == ["TSLA", "AAPL", "AMZN", "MSFT"]  # NVDA: flat, not today
    assert [r.market_value for r in rows] == [D(-2_000), D(1_000), D(300), D(0)]
    msft = rows[3]
    assert (msft.qty, msft.realized_pnl, msft.day_realized_pnl) == (D(0), D(50), D(50))
    assert [p.symbol for p in book.positions()] == ["TSLA", "AAPL", "AMZN"]


def test_set_position_when_reconciling_then_broker_wins_and_history_stays() -> None:
    book = Portfolio(cash=D(10_000))
    book.apply_fill(fill(BUY, "10", "100", commission="1"))
    book.apply_fill(fill(SELL, "4", "110"))  # realized 40, cash 9_439
    broker_time = datetime(2026, 3, 1, 14, 30, tzinfo=UTC)

    book.set_position("AAPL", D(7), D("101.5"))
    same_side = book.position("AAPL")
    book.set_position("AAPL", D(-3), D(120))
    flipped = book.position("AAPL")
    book.set_position("AAPL", D(0), D(0))
    flat = book.position("AAPL")
    book.set_position("AAPL", D(-3), D(120), opened_at=broker_time)
    dated = book.position("AAPL")

    assert same_side is not None
    assert (same_side.qty, same_side.avg_price) == (D(7), D("101.5"))
    assert (same_side.realized_pnl, same_side.commissions) == (D(40), D(1))
    assert same_side.opened_at == T0  # same direction: open time kept
    assert flat is not None
    assert (flat.qty, flat.avg_price, flat.opened_at) == (D(0), D(0), None)
    assert flat.realized_pnl == D(40)
    assert flipped is not None
    assert (flipped.qty, flipped.opened_at) == (D(-3), None)  # age unknown
    assert dated is not None
    assert dated.opened_at == broker_time
    assert book.cash == D(9_439)  # 10_000 - 1_000 - 1 + 440: untouched by set_position


def test_set_cash_when_reconciling_then_equity_follows() -> None:
    book = Portfolio(cash=D(100))
    book.apply_fill(fill(BUY, "1", "50"))

    book.set_cash(D("49.99"))

    assert book.cash == D("49.99")
    assert book.equity == D("99.99")


def test_apply_fill_when_fractional_quantities_then_exact_decimal_results() -> None:
    book = Portfolio(cash=D(1_000))

    book.apply_fill(fill(BUY, "0.5", "200.10"))  # cost 100.05
    book.apply_fill(fill(BUY, "0.25", "201.00"))  # cost 50.25
    averaged = book.position("AAPL")
    realized = book.apply_fill(fill(SELL, "0.3", "202"))

    pos = book.position("AAPL")
    assert averaged is not None
    assert averaged.avg_price == D("200.40")  # 150.30 / 0.75
    assert realized == D("0.48")  # (202 - 200.40) * 0.3
    assert pos is not None
    assert pos.qty == D("0.45")
    assert book.cash == D("910.30")  # 1_000 - 100.05 - 50.25 + 60.60


@pytest.mark.parametrize(
    ("qty", "price", "commission", "ts"),
    [
        ("0", "100", "0", T0),
        ("-1", "100", "0", T0),
        ("1", "0", "0", T0),
        ("1", "-5", "0", T0),
        ("NaN", "100", "0", T0),
        ("1", "Infinity", "0", T0),
        ("1", "100", "-1", T0),
        ("1", "100", "0", T0.replace(tzinfo=None)),
    ],
)
def test_apply_fill_when_fill_invalid_then_value_error_and_nothing_changes(
    qty: str, price: str, commission: str, ts: datetime
) -> None:
    book = Portfolio(cash=D(1_000))
    book.start_day(DAY1, D(1_000))
    book.apply_fill(fill(BUY, "2", "10"))
    before = (book.cash, book.position("AAPL"), book.last_price("AAPL"), book.summary())

    with pytest.raises(ValueError, match="fill"):
        book.apply_fill(fill(SELL, qty, price, commission=commission, ts=ts))

    after = (book.cash, book.position("AAPL"), book.last_price("AAPL"), book.summary())
    assert after == before


def test_projected_position_when_hypothetical_fill_then_signed_qty_after_it() -> None:
    book = Portfolio()
    book.apply_fill(fill(BUY, "10", "100"))

    assert book.projected_position("AAPL", SELL, D(15)) == D(-5)
    assert book.projected_position("AAPL", BUY, D(3)) == D(13)
    assert book.projected_position("MSFT", BUY, D("2.5")) == D("2.5")
    assert book.qty("AAPL") == D(10)  # nothing booked


def test_position_when_caller_mutates_copy_then_book_unchanged() -> None:
    book = Portfolio()
    book.apply_fill(fill(BUY, "10", "100"))

    copy = book.position("AAPL")
    assert copy is not None
    copy.qty = D(999)
    book.positions()[0].avg_price = D(1)

    pos = book.position("AAPL")
    assert pos is not None
    assert (pos.qty, pos.avg_price) == (D(10), D(100))


def test_equity_and_exposure_when_read_with_many_positions_then_no_position_is_revalued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loss-limit check reads these on every trade update: with 2,000 positions a sum
    # per read made a flatten O(N²). Reading them must not touch the positions at all.
    book = Portfolio(cash=D(1_000_000))
    for n in range(200):
        book.apply_fill(fill(BUY if n % 2 else SELL, "3", f"{10 + n}.25", f"S{n}"))
    reads = 0
    value = PositionState.market_value.fget
    assert value is not None

    def counted(state: PositionState) -> Decimal:
        nonlocal reads
        reads += 1
        return value(state)

    monkeypatch.setattr(PositionState, "market_value", property(counted))
    equity, gross = book.equity, book.gross_exposure
    for _ in range(10):
        _ = (book.equity, book.gross_exposure, book.net_exposure, book.day_pnl)
    book.mark("S7", D("99.5"))  # long 3 @ 17.25: moves the totals by its own change only
    book.mark("S8", D("20"))  # short 3 @ 18.25

    assert reads == 0
    assert book.equity - equity == 3 * (D("99.5") - D("17.25")) - 3 * (D("20") - D("18.25"))
    assert book.gross_exposure - gross == 3 * (D("99.5") - D("17.25")) + 3 * (D("20") - D("18.25"))


def test_apply_fill_when_notional_has_fractions_of_a_cent_then_cash_moves_as_settled() -> None:
    # The broker settles each execution's notional to the cent, half-up: booking the exact
    # notional drifted from the broker's cash on every sub-penny fill.
    book = Portfolio(cash=D(10_000))

    book.apply_fill(fill(BUY, "3", "0.1235", "PENY"))  # 0.3705 settles as 0.37
    book.apply_fill(fill(SELL, "3", "0.1255", "PENY"))  # 0.3765 settles as 0.38
    book.apply_fill(fill(BUY, "1", "0.125", "PENY", commission="0.01"))  # 0.125 -> 0.13

    assert book.cash == D("9999.87")
    assert book.cash_base == D(10_000)
    pos = book.position("PENY")
    assert pos is not None
    assert pos.realized_pnl == D("0.0060")  # P&L itself is not rounded
