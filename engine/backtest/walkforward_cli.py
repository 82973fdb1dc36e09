"""``run_bot.py backtest --walk-forward``: the grid, the estimate, the run, the report."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from config import Settings
from engine.backtest import walkforward as wf
from engine.backtest.plan import Plan, PlanError, Request, strategy_specs
from engine.backtest.report import metrics_json, text_summary, write_report
from engine.backtest.runner import BacktestConfig

LONG_S = 60.0
"""An estimate past this is announced as long before the run starts."""
WALK_FORWARD_JSON = "walk_forward.json"


def parameter_sets(
    settings: Settings, request: Request, base: BacktestConfig, grid: dict[str, list[str]]
) -> tuple[list[tuple[dict[str, str], BacktestConfig]], list[str]]:
    """Each grid combination the strategy accepts, as a config; and why others were not."""
    accepted: list[tuple[dict[str, str], BacktestConfig]] = []
    refused: list[str] = []
    for combo in wf.parameter_grid(grid):
        try:
            specs = strategy_specs(settings, replace(request, params={**request.params, **combo}))
        except PlanError as exc:
            refused.append(f"{_params(combo)}: {exc}")
            continue
        accepted.append((combo, replace(base, specs=tuple(specs))))
    return accepted, refused


def run_walk_forward(
    settings: Settings,
    request: Request,
    plan: Plan,
    *,
    grid: dict[str, list[str]],
    train_days: int,
    test_days: int,
    objective: str,
    workers: int | None,
    out: Path,
) -> int:
    if len(plan.config.specs) != 1:
        return _refuse("--walk-forward optimises one strategy: name it with --strategy")
    if not grid:
        return _refuse("--walk-forward needs a parameter grid: --grid NAME=V1,V2,...")
    traded = [d for d in plan.source.day_counts() if plan.start <= d <= plan.end]
    windows = wf.make_windows(traded, train_days, test_days)
    if not windows:
        return _refuse(
            f"{len(traded)} trading days hold no window of {train_days} training and "
            f"{test_days} test days"
        )
    configs, refused = parameter_sets(settings, request, plan.config, grid)
    for line in refused:
        print(f"Skipped {line}", file=sys.stderr)
    if not configs:
        return _refuse("the strategy accepts none of the grid's parameter sets")
    workers = workers or os.cpu_count() or 1
    rate = wf.calibrate(_calibration(configs[0][1], plan, windows[0]))
    bars, seconds = wf.estimate_s(plan.source.day_counts(), windows, len(configs), rate, workers)
    runs = len(configs) * len(windows) + len(windows)
    print(
        f"Walk-forward: {len(configs)} parameter sets x {len(windows)} windows "
        f"({train_days} training + {test_days} test days) = {runs} backtests over "
        f"{bars:,} bars; about {_duration(seconds)} on {workers} processes "
        f"(measured {rate:,.0f} bars/s on one)",
        file=sys.stderr,
    )
    if seconds > LONG_S:
        print(f"This will take a while ({_duration(seconds)}); Ctrl-C stops it.", file=sys.stderr)

    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        line = f"walk-forward: {done} of {total} backtests done"
        sys.stderr.write(f"\r{line}" if tty else f"{line}\n")
        sys.stderr.flush()

    try:
        result = wf.run(
            configs, plan.source.spec, windows, objective=objective, workers=workers,
            progress=progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("\nWalk-forward stopped: nothing was written.", file=sys.stderr)
        return 130
    if tty:
        sys.stderr.write("\n")
    _print(result)
    info = replace(plan.info, start=windows[0].test[0].isoformat())
    write_report(out, result.stitched, result.metrics, info)
    (out / WALK_FORWARD_JSON).write_text(json.dumps(_json(result), indent=2) + "\n")
    print(f"Report: {out} (walk_forward.json, and the stitched out-of-sample run)")
    return 0


def _print(result: wf.WalkForward) -> None:
    print(f"Walk-forward by {result.objective}: chosen on each training window, out of sample:")
    print(f"{'test window':<25} {'chosen':<24} {'train':>7} {'return':>8} {'sharpe':>7} trades")
    for w in result.windows:
        m = w.metrics
        test = f"{w.window.test[0]} to {w.window.test[1]}"
        sharpe = "-" if m.sharpe is None else f"{m.sharpe:.2f}"
        trained = "-" if w.train_score == float("-inf") else f"{w.train_score:.2f}"
        print(
            f"{test:<25} {_params(w.params):<24} {trained:>7} "
            f"{m.total_return * 100:>+7.2f}% {sharpe:>7} {m.trades:>6}"
        )
    print(f"Stitched out of sample ({len(result.windows)} windows, {result.metrics.days} days):")
    print(text_summary(result.metrics, result.stitched))


def _json(result: wf.WalkForward) -> dict[str, Any]:
    def score(value: float) -> float | None:
        return None if value == float("-inf") else round(value, 6)

    return {
        "objective": result.objective,
        "windows": [
            {
                "train": [d.isoformat() for d in w.window.train],
                "test": [d.isoformat() for d in w.window.test],
                "chosen": w.params,
                "train_score": score(w.train_score),
                "train_scores": [score(s) for s in w.scores],
                "test_metrics": metrics_json(w.metrics),
            }
            for w in result.windows
        ],
        "stitched_metrics": metrics_json(result.metrics),
    }


def _calibration(config: BacktestConfig, plan: Plan, window: wf.Window) -> wf.Job:
    """The first training day of the first set: long enough to measure, short to run."""
    first = window.train[0]
    return wf.train_job(config, plan.source.spec, wf.Window((first, first), window.test))


def _params(combo: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in combo.items())


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min"


def _refuse(message: str) -> int:
    print(f"Cannot backtest: {message}", file=sys.stderr)
    return 2
