"""The strategy host: routing, warm-up, hooks, sizing, pausing a strategy that raised."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel

from engine.domain import Bar, Fill, Side
from engine.strategy import OrderIntent, Signal, Strategy, StrategyHost, StrategySpec, size_order

D = Decimal
DAY1 = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)  # 09:30 New York
DAY2 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


class EveryBarParams(BaseModel):
    warmup: int = 3
    side: Side = Side.BUY
    fail_on: int = -1
    """Raise on the bar with this close."""


class EveryBar(Strategy[EveryBarParams]):
    """Asks to trade on every bar; records every call it gets."""

    Params = EveryBarParams

    def __init__(self, params: EveryBarParams, symbol: str) -> None:
        super().__init__(params, symbol)
        self.calls: list[str] = []

    @property
    def warmup_bars(self) -> int:
        return self.params.warmup

    def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
        self.calls.append(f"bar {bar.close}")
        if bar.close == self.params.fail_on:
            raise RuntimeError("boom")
        return Signal(self.params.side, f"close {bar.close}")

    def on_fill(self, fill: Fill) -> None:
        self.calls.append(f"fill {fill.qty}")

    def on_day_start(self, day: date) -> None:
        self.calls.append(f"start {day:%d}")

    def on_day_end(self, day: date) -> None:
        self.calls.append(f"end {day:%d}")


def _spec(name: str, symbols: Sequence[str], **params: object) -> StrategySpec:
    return StrategySpec(
        name=name,
        cls=EveryBar,
        params=EveryBarParams.model_validate(params),
        symbols=tuple(symbols),
        order_qty=D(10),
        long_only=True,
    )


def _bar(symbol: str, minute: int, close: int, start: datetime = DAY1) -> Bar:
    price = D(close)
    return Bar(symbol, start + timedelta(minutes=minute), price, price, price, price, D(100))


def _calls(host: StrategyHost, symbol: str) -> list[str]:
    strategy = host.instance(symbol)
    assert isinstance(strategy, EveryBar)
    return strategy.calls


def test_on_bar_when_warmup_is_three_then_third_bar_seen_is_the_first_that_trades() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=3)])
    host.warm_up("AAPL", [_bar("AAPL", 0, 100), _bar("AAPL", 1, 101)])

    intent = host.on_bar(_bar("AAPL", 2, 102), D(0))

    assert intent == OrderIntent(
        "a", "AAPL", Side.BUY, D(10), DAY1 + timedelta(minutes=2), "close 102"
    )
    assert host.warmup_bars("AAPL") == 3


def test_on_bar_when_not_yet_warmed_up_then_strategy_sees_bar_but_no_order() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=3)])

    first = host.on_bar(_bar("AAPL", 0, 100), D(0))
    second = host.on_bar(_bar("AAPL", 1, 101), D(0))
    third = host.on_bar(_bar("AAPL", 2, 102), D(0))

    assert (first, second) == (None, None)
    assert third is not None
    assert _calls(host, "AAPL") == ["start 19", "bar 100", "bar 101", "bar 102"]


def test_on_bar_when_may_not_trade_then_state_updates_and_request_dropped() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=0)])

    assert host.on_bar(_bar("AAPL", 0, 100), D(0), may_trade=False) is None
    assert _calls(host, "AAPL")[-1] == "bar 100"


def test_on_bar_when_two_strategies_then_each_symbol_goes_to_its_owner_only() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=0), _spec("b", ["MSFT"], warmup=0)])

    msft = host.on_bar(_bar("MSFT", 0, 200), D(0))

    assert msft is not None
    assert msft.strategy == "b"
    assert _calls(host, "AAPL") == []
    assert host.owners == {"AAPL": "a", "MSFT": "b"}
    assert host.on_bar(_bar("SPY", 0, 500), D(0)) is None  # nobody trades SPY


def test_host_when_symbol_claimed_twice_then_refused() -> None:
    with pytest.raises(ValueError, match="AAPL is claimed by two strategies"):
        StrategyHost([_spec("a", ["AAPL"]), _spec("b", ["AAPL"])])


def test_on_bar_when_bar_is_not_newer_than_the_last_then_ignored_and_counted() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=0)])
    host.on_bar(_bar("AAPL", 5, 100), D(0))

    assert host.on_bar(_bar("AAPL", 5, 101), D(0)) is None  # a correction of a seen bar
    assert host.on_bar(_bar("AAPL", 4, 99), D(0)) is None

    assert host.late_bars == 2
    assert _calls(host, "AAPL") == ["start 19", "bar 100"]


def test_hooks_when_warm_up_spans_days_then_live_bars_continue_the_same_day_sequence() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=0)])
    host.warm_up("AAPL", [_bar("AAPL", 0, 1), _bar("AAPL", 0, 2, start=DAY2)])

    host.on_bar(_bar("AAPL", 1, 3, start=DAY2), D(0))
    host.on_bar(_bar("AAPL", 0, 4, start=DAY2 + timedelta(days=3)), D(0))  # Monday
    host.end_day()

    assert _calls(host, "AAPL") == [
        "start 19",
        "bar 1",
        "end 19",
        "start 20",
        "bar 2",
        "bar 3",  # same day as the last warm-up bar: no second start
        "end 20",
        "start 23",
        "bar 4",
        "end 23",
    ]


def test_on_fill_when_own_order_then_heard_and_other_strategies_fills_are_not() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=0)])
    fill = Fill("x1", "cid", "b1", "AAPL", Side.BUY, D(4), D(100), DAY1)

    host.on_fill(fill, "a")
    host.on_fill(fill, "flatten")

    assert _calls(host, "AAPL") == ["fill 4"]


def test_on_bar_when_strategy_raises_then_it_pauses_alone_and_the_other_keeps_trading() -> None:
    paused: list[tuple[str, str]] = []
    host = StrategyHost(
        [_spec("a", ["AAPL", "SPY"], warmup=0, fail_on=13), _spec("b", ["MSFT"], warmup=0)],
        on_pause=lambda name, why: paused.append((name, why)),
    )

    assert host.on_bar(_bar("AAPL", 0, 13), D(0)) is None
    spy = host.on_bar(_bar("SPY", 0, 500), D(0))
    msft = host.on_bar(_bar("MSFT", 0, 200), D(0))

    assert paused == [("a", "RuntimeError in on_bar for AAPL: boom")]
    assert host.paused == {"a": "RuntimeError in on_bar for AAPL: boom"}
    assert spy is None, "a paused strategy trades none of its symbols"
    assert msft is not None
    assert msft.strategy == "b"


def test_resume_when_paused_then_fresh_instances_warmed_up_trade_again() -> None:
    host = StrategyHost([_spec("a", ["AAPL"], warmup=2, fail_on=13)])
    host.on_bar(_bar("AAPL", 0, 13), D(0))
    old = host.instance("AAPL")

    resumed = host.resume("a", {"AAPL": [_bar("AAPL", 1, 100)]}, {})
    intent = host.on_bar(_bar("AAPL", 2, 101), D(0))

    assert resumed is True
    assert host.paused == {}
    assert host.instance("AAPL") is not old
    assert _calls(host, "AAPL") == ["start 19", "bar 100", "bar 101"]
    assert intent is not None
    assert intent.reason == "close 101"
    assert host.resume("a", {}, {}) is False, "not paused any more"


def test_on_bar_when_signal_carries_its_own_qty_then_used_and_long_only_never_goes_short() -> None:
    class Fixed(EveryBar):
        def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
            return Signal(self.params.side, "fixed", qty=D(25))

    buy = StrategySpec("f", Fixed, EveryBarParams(warmup=0), ("AAPL",), D(10), True)
    sell = StrategySpec(
        "g", Fixed, EveryBarParams(warmup=0, side=Side.SELL), ("MSFT",), D(10), True
    )
    host = StrategyHost([buy, sell])

    bought = host.on_bar(_bar("AAPL", 0, 100), D(0))
    sold = host.on_bar(_bar("MSFT", 0, 100), D(7))

    assert bought is not None
    assert bought.qty == D(25)
    assert sold is not None
    assert sold.qty == D(7)


def test_on_bar_when_signal_qty_is_not_positive_then_strategy_paused() -> None:
    class Broken(EveryBar):
        def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
            return Signal(Side.BUY, "broken", qty=D(-1))

    host = StrategyHost(
        [StrategySpec("x", Broken, EveryBarParams(warmup=0), ("AAPL",), D(1), True)]
    )

    assert host.on_bar(_bar("AAPL", 0, 100), D(0)) is None
    assert "Signal.qty must be a positive Decimal" in host.paused["x"]


def test_request_when_same_signal_again_then_same_client_order_id() -> None:
    intent = OrderIntent("golden_cross", "AAPL", Side.BUY, D(10), DAY1, "why")

    first, again = intent.request(), intent.request()

    assert first.client_order_id == again.client_order_id
    assert first.client_order_id.startswith("golden_cro-AAPL-20261119T143000-")
    assert (first.strategy, first.side, first.qty) == ("golden_cross", Side.BUY, D(10))


@pytest.mark.parametrize(
    ("side", "position", "long_only", "expected"),
    [
        (Side.BUY, "0", True, "10"),
        (Side.BUY, "10", True, "0"),  # already long
        (Side.BUY, "-5", True, "0"),  # long-only does not trade a short it did not open
        (Side.SELL, "7", True, "7"),  # sell the whole long
        (Side.SELL, "0", True, "0"),  # never opens a short
        (Side.SELL, "-3", True, "0"),
        (Side.BUY, "-5", False, "15"),  # cover 5, then long 10
        (Side.BUY, "0", False, "10"),
        (Side.BUY, "3", False, "0"),
        (Side.SELL, "7", False, "17"),  # sell 7, then short 10
        (Side.SELL, "0", False, "10"),
        (Side.SELL, "-10", False, "0"),
    ],
)
def test_size_order_when_signal_without_qty_then_sized_from_position(
    side: Side, position: str, long_only: bool, expected: str
) -> None:
    assert size_order(side, D(position), D(10), long_only) == D(expected)
