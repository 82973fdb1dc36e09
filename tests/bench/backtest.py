"""Backtest benchmark (run by hand, not in CI):

    .venv/bin/python -m tests.bench.backtest [--symbols 100] [--days 30] [--runs 1]
        [--no-backtrader] [--profile]

Golden cross (10/30, long-only, 10 shares, 2 bps slippage, $0.005 a share with a $1 minimum)
on N symbols x D sessions of seeded random-walk minute bars, held in memory:

- ours: ``engine.backtest.runner`` on the engine's own parts (host, gate, simulator,
  portfolio), bars per second of the run itself (loading is reported apart);
- backtrader 1.9.78 on the same bars in the same process: one ``PandasData`` feed per symbol
  with prices in cents, so that its ``SumN`` moving sums are exact (floats hold whole numbers
  exactly) and the cross is decided as ours decides it (``fast_sum * slow == slow_sum *
  fast`` is touching, not a cross) instead of on float averages; market orders filled at the
  signal bar's close (``set_coc``), the same slippage (a percentage, then rounded half-up to
  the cent as our simulator does) and commission, no order on a session's last bar (our gate
  refuses it: the market has closed);
- the two trade lists compared execution by execution.

``--profile`` runs ours once more under cProfile on the first day and prints where the time
goes.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from datetime import UTC, date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from config.settings import RiskSettings
from engine.backtest.runner import BacktestConfig, BacktestRunner
from engine.calendar import MarketCalendar
from engine.domain import Bar
from engine.strategy.golden_cross import GoldenCross, GoldenCrossParams
from engine.strategy.loader import StrategySpec

FAST, SLOW, QTY = 10, 30, 10
SLIPPAGE_BPS = Decimal(2)
PER_SHARE, MINIMUM = Decimal("0.005"), Decimal(1)
CENT = Decimal("0.01")
WIDE = RiskSettings(
    max_position_qty=Decimal(10**6),
    max_position_notional=Decimal(10**9),
    max_gross_exposure=Decimal(10**10),
    max_order_notional=Decimal(10**9),
    daily_loss_limit=Decimal(10**9),
    max_orders_per_day=10**7,
)


def make_bars(symbols: int, days: int, seed: int = 7) -> list[Bar]:
    """Random walks in whole cents with trending and ranging stretches, regular hours of
    ``days`` sessions from 2026-06-01, in time order."""
    rng = random.Random(seed)
    sessions = MarketCalendar().sessions(date(2026, 6, 1), date(2027, 6, 1))[:days]
    names = [f"S{i:03d}" for i in range(symbols)]
    cents = {s: rng.randint(2_000, 40_000) for s in names}
    drift = dict.fromkeys(names, 0)
    bars: list[Bar] = []
    for session in sessions:
        minutes = int((session.close - session.open).total_seconds() // 60)
        for minute in range(minutes):
            ts = session.open + timedelta(minutes=minute)
            for s in names:
                price = cents[s]
                if minute % 45 == 0:
                    drift[s] = rng.choice((-1, 0, 1)) * max(1, price // 2_500)
                noise = max(1, price // 1_250)
                close = max(100, price + drift[s] + rng.randint(-noise, noise))
                high = max(price, close) + rng.randint(0, 3)
                low = max(1, min(price, close) - rng.randint(0, 3))
                o, h, lo, c = (Decimal(v).scaleb(-2) for v in (price, high, low, close))
                bars.append(Bar(s, ts, o, h, lo, c, Decimal(rng.randint(500, 5_000))))
                cents[s] = close
    return bars


def run_ours(bars: list[Bar], symbols: list[str]) -> tuple[float, list[tuple[Any, ...]]]:
    spec = StrategySpec(
        "golden_cross",
        GoldenCross,
        GoldenCrossParams(fast=FAST, slow=SLOW),
        tuple(symbols),
        Decimal(QTY),
        True,
    )
    config = BacktestConfig(
        specs=(spec,),
        risk=WIDE,
        starting_cash=Decimal(10**8),
        slippage_bps=SLIPPAGE_BPS,
        commission_per_share=PER_SHARE,
        commission_min=MINIMUM,
    )
    started = time.perf_counter()
    result = BacktestRunner(config).run(bars)
    elapsed = time.perf_counter() - started
    trades = [(t.ts, t.symbol, t.side.value, t.qty, t.price, t.fees) for t in result.trades]
    return elapsed, trades


def run_backtrader(bars: list[Bar], symbols: list[str]) -> tuple[float, float, list[Any]]:
    """(seconds to build the feeds, seconds to run, trades)."""
    import backtrader as bt  # type: ignore[import-untyped]
    import pandas as pd

    started = time.perf_counter()
    columns: dict[str, list[list[Any]]] = {s: [] for s in symbols}
    for b in bars:
        columns[b.symbol].append(
            [b.ts.replace(tzinfo=None), float(b.open * 100), float(b.high * 100),
             float(b.low * 100), float(b.close * 100), float(b.volume)]
        )  # fmt: skip
    cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True)
    for symbol, rows in columns.items():
        frame = pd.DataFrame(rows, columns=["dt", "open", "high", "low", "close", "volume"])
        cerebro.adddata(bt.feeds.PandasData(dataname=frame.set_index("dt")), name=symbol)
    calendar = MarketCalendar()
    last_minutes = {
        (s.close - timedelta(minutes=1)).replace(tzinfo=None)
        for s in calendar.sessions(bars[0].ts.date(), bars[-1].ts.date())
    }

    class PerShareWithMinimum(bt.CommInfoBase):  # type: ignore[misc]
        params = (
            ("commission", float(PER_SHARE)),
            ("minimum", float(MINIMUM)),
            ("stocklike", True),
            ("commtype", bt.CommInfoBase.COMM_FIXED),
        )

        def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
            return float(max(self.p.minimum, abs(size) * self.p.commission))

    fills: list[Any] = []

    class Cross(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.fast = {d: bt.ind.SumN(d.close, period=FAST) for d in self.datas}
            self.slow = {d: bt.ind.SumN(d.close, period=SLOW) for d in self.datas}
            self.before: dict[Any, int] = {}

        def next(self) -> None:
            for d in self.datas:
                if len(d) < SLOW:
                    continue
                f, s = self.fast[d][0] * SLOW, self.slow[d][0] * FAST
                now = (f > s) - (f < s)
                before = self.before.get(d)
                self.before[d] = now
                if before is None or d.datetime.datetime(0) in last_minutes:
                    continue
                held = self.getposition(d).size
                if now > 0 >= before and held == 0:
                    self.buy(data=d, size=QTY)
                elif now < 0 <= before and held > 0:
                    self.sell(data=d, size=held)

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                fills.append(order)

    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(10.0**10)  # cents
    cerebro.broker.set_coc(True)
    # slip_out: the slipped price even beyond the bar's range, as our simulator charges it.
    cerebro.broker.set_slippage_perc(
        float(SLIPPAGE_BPS) / 10_000, slip_open=True, slip_match=True, slip_out=True
    )
    cerebro.broker.addcommissioninfo(PerShareWithMinimum())
    built = time.perf_counter()
    cerebro.run()
    ran = time.perf_counter()
    trades = []
    for order in fills:
        ex = order.executed
        at = bt.num2date(ex.dt).replace(tzinfo=UTC) + timedelta(minutes=1)
        cents = Decimal(repr(round(ex.price, 6)))
        price = (cents / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        fee = Decimal(repr(round(ex.comm, 6))).quantize(CENT, rounding=ROUND_HALF_UP)
        side = "buy" if ex.size > 0 else "sell"
        trades.append((at, order.data._name, side, Decimal(abs(int(ex.size))), price, fee))
    trades.sort(key=lambda t: (t[0], t[1]))
    return built - started, ran - built, trades


def profile(bars: list[Bar], symbols: list[str]) -> None:
    first_day = bars[0].ts.date()
    day = [b for b in bars if b.ts.date() == first_day]
    profiler = cProfile.Profile()
    profiler.runcall(run_ours, day, symbols)
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-backtrader", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    bars = make_bars(args.symbols, args.days)
    symbols = sorted({b.symbol for b in bars})
    print(f"{len(bars):,} bars ({args.symbols} symbols x {args.days} sessions), "
          f"generated in {time.perf_counter() - started:.1f} s")  # fmt: skip
    ours: list[float] = []
    trades: list[tuple[Any, ...]] = []
    for _ in range(args.runs):
        elapsed, trades = run_ours(bars, symbols)
        ours.append(elapsed)
        print(f"ours:       {elapsed:6.1f} s  {len(bars) / elapsed:10,.0f} bars/s  "
              f"{len(trades):,} fills")  # fmt: skip
    best = min(ours)
    if not args.no_backtrader:
        build_s, run_s, theirs = run_backtrader(bars, symbols)
        print(f"backtrader: {run_s:6.1f} s  {len(bars) / run_s:10,.0f} bars/s  "
              f"{len(theirs):,} fills (feeds built in {build_s:.1f} s)")  # fmt: skip
        print(f"ratio: ours is {run_s / best:.1f}x faster")
        same = sum(1 for a, b in zip(trades, theirs, strict=False) if a == b)
        pairs = enumerate(zip(trades, theirs, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), None)
        print(f"trades: {same:,} of {len(trades):,} identical in order; backtrader "
              f"{len(theirs):,}; first difference at {first}")  # fmt: skip
        if first is not None:
            print(f"  ours:       {trades[first] if first < len(trades) else None}")
            print(f"  backtrader: {theirs[first] if first < len(theirs) else None}")
    if args.profile:
        profile(bars, symbols)


if __name__ == "__main__":
    main()
