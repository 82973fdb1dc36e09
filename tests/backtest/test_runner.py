"""The runner on the engine's own parts: fill timing, no look-ahead, the gate, the halt."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from config.settings import RiskSettings
from engine.backtest.runner import BacktestRunner
from engine.domain import Side
from tests.backtest.support import DAY1, DAY2, WIDE_RISK, Scripted, bars, config, scripted


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    Scripted.log.clear()


def test_order_when_signalled_then_fills_at_that_bars_close_before_the_next_bar() -> None:
    run = BacktestRunner(config(scripted(buy_at=(1,)), slippage_bps=Decimal(10)))

    result = run.run(bars("AAPL", DAY1, 100, 101, 102))

    assert Scripted.log == [
        "bar AAPL 14:30 close 100",
        "bar AAPL 14:31 close 101",
        # 101 * (1 + 10 bps) = 101.101 -> 101.10, at the signal bar's close (14:32)
        "fill buy 10 AAPL at 101.10 14:32 after bar 14:31",
        "bar AAPL 14:32 close 102",
    ]
    (trade,) = result.trades
    assert (trade.ts, trade.price, trade.strategy, trade.reason) == (
        DAY1 + timedelta(minutes=2),
        Decimal("101.10"),
        "scripted",
        "buy on bar 1",
    )


def test_partial_fills_when_max_fill_qty_then_the_order_fills_over_later_closes() -> None:
    run = BacktestRunner(config(scripted(buy_at=(0,)), max_fill_qty=Decimal(4)))

    result = run.run(bars("AAPL", DAY1, 100, 101, 102, 103))

    assert [(t.qty, t.price) for t in result.trades] == [
        (Decimal(4), Decimal(100)),
        (Decimal(4), Decimal(101)),
        (Decimal(2), Decimal(102)),
    ]
    assert result.final_equity == Decimal(100_000) + 10 * 103 - (4 * 100 + 4 * 101 + 2 * 102)


def test_commission_when_per_share_with_minimum_then_charged_per_order_and_counted() -> None:
    cfg = config(
        scripted(buy_at=(0,), sell_at=(2,)),
        commission_per_share=Decimal("0.01"),
        commission_min=Decimal(1),
    )

    result = BacktestRunner(cfg).run(bars("AAPL", DAY1, 100, 101, 105))

    assert [t.fees for t in result.trades] == [Decimal(1), Decimal(1)]
    (trip,) = result.round_trips
    assert trip.pnl == 10 * (105 - 100) - 2
    assert result.final_equity == Decimal(100_000) + trip.pnl


def test_warm_up_when_trade_from_then_history_only_warms_and_first_bar_may_trade() -> None:
    history = bars("AAPL", DAY1, 1, 2, 3, 4, 5)
    cfg = config(scripted(buy_at=(3,), warmup=3), trade_from=DAY2)

    result = BacktestRunner(cfg).run([*history, *bars("AAPL", DAY2, 50, 51)])

    # The strategy saw the last 3 history bars (its warm-up), then DAY2's first bar (its 4th:
    # bar number 3) traded at once at that bar's close.
    assert Scripted.log[:3] == [
        f"bar AAPL 14:{m} close {c}" for m, c in ((32, 3), (33, 4), (34, 5))
    ]
    assert [(t.ts, t.price) for t in result.trades] == [(DAY2 + timedelta(minutes=1), Decimal(50))]
    assert result.traded_bars == 2
    assert result.bars == 7


def test_signal_when_on_the_sessions_last_bar_then_refused_as_market_closed() -> None:
    last_bar = DAY1 + timedelta(minutes=389)  # 15:59 New York: it closes at 16:00

    result = BacktestRunner(config(scripted(buy_at=(0,)))).run(bars("AAPL", last_bar, 100))

    assert result.trades == []
    assert result.rejections == {"market_closed": 1}


def test_order_when_market_open_not_required_then_placed_at_close_fills_next_session() -> None:
    risk = WIDE_RISK.model_copy(update={"require_market_open": False})
    last_bar = DAY1 + timedelta(minutes=389)
    cfg = config(scripted(buy_at=(0,), warmup=0), risk=risk)

    result = BacktestRunner(cfg).run([*bars("AAPL", last_bar, 100), *bars("AAPL", DAY2, 97)])

    assert [(t.ts, t.price) for t in result.trades] == [(DAY2 + timedelta(minutes=1), Decimal(97))]


def test_gate_when_order_breaks_a_limit_then_refused_with_the_gates_reason() -> None:
    risk = WIDE_RISK.model_copy(update={"max_order_notional": Decimal(500)})

    result = BacktestRunner(config(scripted(buy_at=(0,)), risk=risk)).run(bars("AAPL", DAY1, 100))

    assert result.trades == []
    assert result.rejections == {"fat_finger_notional": 1}


def test_loss_limit_when_breached_then_halted_flat_for_the_day_and_trading_next_day() -> None:
    risk = WIDE_RISK.model_copy(update={"daily_loss_limit": Decimal(50)})
    spec = scripted(buy_at=(0, 3, 5), qty=10)
    day1 = bars("AAPL", DAY1, 100, 96, 94, 93, 92)  # -60 after the third bar

    result = BacktestRunner(config(spec, risk=risk)).run([*day1, *bars("AAPL", DAY2, 90)])

    sides = [(t.side, t.price, t.strategy) for t in result.trades]
    assert sides == [
        (Side.BUY, Decimal(100), "scripted"),
        (Side.SELL, Decimal(94), "flatten"),  # flat at the breaching bar's close
        (Side.BUY, Decimal(90), "scripted"),  # DAY2: bar 3 was dropped while halted
    ]
    assert len(result.halts) == 1
    assert "daily loss limit hit: day P&L -$60.00 <= -$50.00" in result.halts[0]


def test_bars_when_out_of_time_order_then_refused() -> None:
    late, early = bars("AAPL", DAY1, 100, 101)

    with pytest.raises(ValueError, match="not in time order"):
        BacktestRunner(config(scripted())).run([early, late])


def test_daily_rows_when_two_days_then_each_days_last_equity() -> None:
    spec = scripted(buy_at=(0,))

    result = BacktestRunner(config(spec)).run(
        [*bars("AAPL", DAY1, 100, 110), *bars("AAPL", DAY2, 90)]
    )

    assert [(d.day.isoformat(), d.equity) for d in result.days] == [
        ("2026-11-19", Decimal(100_100)),
        ("2026-11-20", Decimal(99_900)),
    ]
    assert result.minutes == 3
    assert result.minutes_in_market == 3


def test_risk_settings_default_when_strategy_symbols_then_allowed() -> None:
    cfg = config(scripted(symbols=("AAPL", "MSFT")), risk=RiskSettings())

    assert cfg.allowed_symbols == ["AAPL", "MSFT"]


def test_buying_power_when_positions_and_open_orders_then_equals_the_accounts_own_figure() -> None:
    spec = scripted(symbols=("AAPL", "MSFT"), buy_at=(0,), qty=30)
    run = BacktestRunner(config(spec, max_fill_qty=Decimal(7), starting_cash=Decimal(9_000)))
    day = sorted(
        [*bars("AAPL", DAY1, 100, 102, 97, 99), *bars("MSFT", DAY1, 200, 195, 210, 205)],
        key=lambda b: (b.ts, b.symbol),
    )
    seen: list[tuple[Decimal, Decimal]] = []
    original = run._after_minute

    def check(now: datetime) -> None:
        assert run._exchange is not None
        account = run._exchange.account()
        seen.append((run._buying_power().quantize(Decimal("0.01")), account.buying_power))
        original(now)

    run._after_minute = check  # type: ignore[method-assign]

    result = run.run(day)

    assert result.trades  # partly filled orders stayed open across minutes
    assert any(ours != Decimal(0) for ours, _ in seen)
    assert [ours for ours, _ in seen] == [theirs for _, theirs in seen]


def test_buying_power_when_too_little_then_the_gate_refuses_before_the_exchange() -> None:
    spec = scripted(buy_at=(0,), qty=100)

    result = BacktestRunner(config(spec, starting_cash=Decimal(1_000))).run(bars("AAPL", DAY1, 100))

    assert result.trades == []
    assert result.rejections == {"buying_power": 1}
