"""Walk-forward: choose parameters on a training window, trade them on the window after it.

The data's trading days are cut into rolling windows of ``train`` days followed by ``test``
days, stepping by ``test`` days. On each training window every parameter set of the grid is
backtested and the best by the objective (Sharpe by default; ties go to the first set in
grid order) is chosen; it is then backtested on the test window, warmed up on the training
window's bars (they are read, not traded). The test windows' results are the out-of-sample
result, also stitched into one: their daily returns compounded from the starting cash,
their trades one after the other.

Every backtest is independent, so they run on all cores through a process pool; each worker
opens the bars again from the source's description (``SourceSpec``).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from engine.backtest.history import day_span
from engine.backtest.metrics import Metrics, compute
from engine.backtest.results import BacktestResult, DayRow
from engine.backtest.runner import BacktestConfig, BacktestRunner
from engine.backtest.sources import SourceSpec, Span

OBJECTIVES = ("sharpe", "sortino", "total_return", "cagr", "profit_factor")


@dataclass(frozen=True, slots=True)
class Window:
    train: tuple[date, date]
    test: tuple[date, date]


def make_windows(days: Sequence[date], train: int, test: int) -> list[Window]:
    """Rolling windows over ``days`` (trading days, oldest first); only whole ones."""
    if train < 1 or test < 1:
        raise ValueError("train and test windows need at least one day each")
    windows = []
    first = 0
    while first + train + test <= len(days):
        cut = first + train
        windows.append(Window((days[first], days[cut - 1]), (days[cut], days[cut + test - 1])))
        first += test
    return windows


def parameter_grid(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every combination, the first parameter varying slowest."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def score(metrics: Metrics, objective: str) -> float:
    value = getattr(metrics, objective)
    return -math.inf if value is None else float(value)


@dataclass(frozen=True)
class Job:
    config: BacktestConfig
    source: SourceSpec
    span: Span


def run_job(job: Job) -> BacktestResult:
    """One backtest, in a worker process."""
    bars = job.source.open().bars(job.span)
    return BacktestRunner(job.config).run(bars)


@dataclass(frozen=True)
class WindowResult:
    window: Window
    params: dict[str, str]
    train_score: float
    scores: list[float]
    """Every parameter set's training score, in grid order."""
    result: BacktestResult
    metrics: Metrics


@dataclass(frozen=True)
class WalkForward:
    windows: list[WindowResult]
    stitched: BacktestResult
    metrics: Metrics
    objective: str


def train_job(config: BacktestConfig, source: SourceSpec, window: Window) -> Job:
    first, last = day_span(*window.train)
    return Job(replace(config, trade_from=first), source, (first, last))


def test_job(config: BacktestConfig, source: SourceSpec, window: Window) -> Job:
    """Read from the training window's start (warm-up), trade the test window only."""
    first, _ = day_span(*window.train)
    trade_from, last = day_span(*window.test)
    return Job(replace(config, trade_from=trade_from), source, (first, last))


def run(
    configs: Sequence[tuple[dict[str, str], BacktestConfig]],
    source: SourceSpec,
    windows: Sequence[Window],
    *,
    objective: str = "sharpe",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WalkForward:
    """Train every parameter set on every window, then test each window's choice."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
    total = len(configs) * len(windows) + len(windows)
    done = 0

    def tick(_: object) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    # Spawned, not forked: a worker inherits no thread, lock or open file of the parent.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count(), mp_context=context)
    try:
        trained: list[list[Future[BacktestResult]]] = []
        for window in windows:
            row = [pool.submit(run_job, train_job(c, source, window)) for _, c in configs]
            for future in row:
                future.add_done_callback(tick)
            trained.append(row)
        choices = []
        for window, row in zip(windows, trained, strict=True):
            scores = [score(compute(f.result()), objective) for f in row]
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
            choices.append((window, best, scores))
        tested = []
        for window, best, _ in choices:
            future = pool.submit(run_job, test_job(configs[best][1], source, window))
            future.add_done_callback(tick)
            tested.append(future)
        results = []
        for (window, best, scores), future in zip(choices, tested, strict=True):
            result = future.result()
            results.append(
                WindowResult(
                    window, configs[best][0], scores[best], scores, result, compute(result)
                )
            )
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: nothing more starts
        raise
    pool.shutdown()
    stitched = stitch([r.result for r in results], configs[0][1].starting_cash)
    return WalkForward(results, stitched, compute(stitched), objective)


def stitch(results: Iterable[BacktestResult], start: Decimal) -> BacktestResult:
    """The test windows as one run: each day's return applied to the equity so far (every
    window started from ``start``), trades and round trips one window after another."""
    out = BacktestResult(starting_cash=start)
    equity = start
    for result in results:
        scale = equity / result.starting_cash
        out.curve += [(ts, value * scale) for ts, value in result.curve]
        out.days += [DayRow(d.day, d.equity * scale, d.cash * scale) for d in result.days]
        if out.days:
            equity = out.days[-1].equity
        out.trades += result.trades
        out.round_trips += result.round_trips
        out.rejections.update(result.rejections)
        out.halts += result.halts
        out.paused.update(result.paused)
        out.bars += result.bars
        out.traded_bars += result.traded_bars
        out.minutes += result.minutes
        out.minutes_in_market += result.minutes_in_market
        out.elapsed_s += result.elapsed_s
    return out


def estimate_s(
    bars_per_day: Mapping[date, int],
    windows: Sequence[Window],
    parameter_sets: int,
    rate: float,
    workers: int,
) -> tuple[int, float]:
    """(bars read in all, seconds) for the whole walk-forward at ``rate`` bars/s a worker."""

    def bars(first: date, last: date) -> int:
        return sum(n for day, n in bars_per_day.items() if first <= day <= last)

    total = 0
    for w in windows:
        train = bars(*w.train)
        total += parameter_sets * train + train + bars(*w.test)
    backtests = parameter_sets * len(windows) + len(windows)
    parallel = min(workers, backtests) or 1
    return total, total / max(rate, 1.0) / parallel


def calibrate(job: Job) -> float:
    """Bars per second of one short run in this process."""
    started = time.perf_counter()
    result = run_job(job)
    return result.bars / max(time.perf_counter() - started, 1e-6)
