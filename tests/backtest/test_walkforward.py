"""Walk-forward: windows, grid, stitching, and the command end to end on a process pool."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.backtest import walkforward as wf
from engine.backtest import walkforward_cli
from engine.backtest.results import BacktestResult, DayRow
from run_bot import main
from tests.bench.backtest import make_bars

DAYS = [date(2026, 6, 1) + timedelta(days=i) for i in range(10)]


def test_windows_when_ten_days_then_rolling_by_the_test_length_and_only_whole_ones() -> None:
    windows = wf.make_windows(DAYS, train=4, test=3)

    assert [(w.train, w.test) for w in windows] == [
        ((DAYS[0], DAYS[3]), (DAYS[4], DAYS[6])),
        ((DAYS[3], DAYS[6]), (DAYS[7], DAYS[9])),
    ]


def test_grid_when_two_parameters_then_every_combination_first_varying_slowest() -> None:
    grid = wf.parameter_grid({"fast": ["5", "10"], "slow": ["20", "30", "40"]})

    assert grid[:4] == [
        {"fast": "5", "slow": "20"},
        {"fast": "5", "slow": "30"},
        {"fast": "5", "slow": "40"},
        {"fast": "10", "slow": "20"},
    ]
    assert len(grid) == 6


def _window_result(*equity: str) -> BacktestResult:
    result = BacktestResult(starting_cash=Decimal(100))
    result.days = [DayRow(DAYS[i], Decimal(e), Decimal(e)) for i, e in enumerate(equity)]
    return result


def test_stitch_when_each_window_starts_from_the_cash_then_returns_compound() -> None:
    # +10 %, +10 %, then a window that lost 10 %: 100 -> 110 -> 121 -> 108.9
    stitched = wf.stitch([_window_result("110", "121"), _window_result("90")], Decimal(100))

    assert [d.equity for d in stitched.days] == [Decimal(110), Decimal(121), Decimal("108.9")]
    assert stitched.final_equity == Decimal("108.9")


def test_estimate_when_grid_and_windows_then_bars_read_and_seconds_on_the_workers() -> None:
    counts = dict.fromkeys(DAYS, 1000)
    windows = wf.make_windows(DAYS, train=4, test=3)  # two windows

    bars, seconds = wf.estimate_s(counts, windows, parameter_sets=3, rate=1000.0, workers=2)

    # Each window: 3 training runs of 4,000 bars + a test run reading 4,000 + 3,000.
    assert bars == 2 * (3 * 4000 + 7000)
    assert seconds == pytest.approx(bars / 1000 / 2)


def _csv(tmp_path: Path, days: int = 8) -> Path:
    path = tmp_path / "bars.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        for b in make_bars(2, days):
            out.writerow([b.ts.isoformat(), b.symbol, b.open, b.high, b.low, b.close, b.volume])
    return path


@pytest.mark.slow
def test_walk_forward_when_run_then_best_training_set_is_traded_out_of_sample_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walkforward_cli, "LONG_S", 0.0)  # announce even a short run as long
    out = tmp_path / "wf"
    code = main(
        [
            "backtest", "--env-file", "/dev/null", "--data-dir", str(tmp_path),
            "--csv", str(_csv(tmp_path)), "--strategy", "golden_cross", "--symbols", "S000,S001",
            "--walk-forward", "--grid", "fast=3,5,40", "--grid", "slow=12",
            "--train-days", "3", "--test-days", "2", "--workers", "2", "--out", str(out),
        ]
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == 0, err
    assert "Skipped fast=40 slow=12: --param fast, --param slow: the fast length" in err
    estimate = next(line for line in err.splitlines() if line.startswith("Walk-forward:"))
    assert estimate.startswith(
        "Walk-forward: 2 parameter sets x 2 windows (3 training + 2 test days) = 6 backtests"
    )
    assert "This will take a while" in err
    assert err.index("This will take a while") < err.index("1 of 6 backtests done")
    report = json.loads((out / "walk_forward.json").read_text())
    windows = report["windows"]
    assert [w["test"] for w in windows] == [
        ["2026-06-04", "2026-06-05"],
        ["2026-06-08", "2026-06-09"],
    ]
    for w in windows:
        scores = w["train_scores"]
        ranked = [-1e300 if s is None else s for s in scores]
        best = max(range(len(ranked)), key=lambda i: (ranked[i], -i))
        assert w["chosen"] == [{"fast": "3", "slow": "12"}, {"fast": "5", "slow": "12"}][best]
    trades = (out / "trades.csv").read_text().splitlines()[1:]
    traded_days = {row[:10] for row in trades}
    assert traded_days
    assert traded_days <= {"2026-06-04", "2026-06-05", "2026-06-08", "2026-06-09"}
    summary = json.loads((out / "summary.json").read_text())
    growth = 1.0
    for w in windows:
        growth *= 1 + w["test_metrics"]["total_return"]
    assert summary["metrics"]["total_return"] == pytest.approx(growth - 1, abs=1e-6)


def test_walk_forward_when_the_strategy_accepts_no_set_then_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "backtest", "--env-file", "/dev/null", "--data-dir", str(tmp_path),
            "--csv", str(_csv(tmp_path, days=6)), "--strategy", "golden_cross",
            "--symbols", "S000", "--walk-forward", "--grid", "fast=50", "--train-days", "3",
            "--test-days", "2",
        ]
    )  # fmt: skip

    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[-1] == "Cannot backtest: the strategy accepts none of the grid's parameter sets"
