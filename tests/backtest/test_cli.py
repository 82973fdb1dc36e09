"""``python run_bot.py backtest`` end to end, in process: arguments, report folder, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.backtest.history import HistoryCache, day_span
from engine.domain import Bar
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH
from run_bot import main

SAMPLE = str(SAMPLE_BARS_PATH)


def _run(tmp_path: Path, *args: str) -> int:
    return main(["backtest", "--env-file", "/dev/null", "--data-dir", str(tmp_path), *args])


def test_backtest_when_csv_and_strategy_then_report_folder_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"

    code = _run(
        tmp_path, "--csv", SAMPLE, "--strategy", "golden_cross", "--param", "fast=5",
        "--param", "SLOW=20", "--cash", "50000", "--commission-per-share", "0.01",
        "--commission-min", "0", "--slippage-bps", "0", "--out", str(out),
    )  # fmt: skip

    printed = capsys.readouterr()
    assert code == 0
    assert "Final equity" in printed.out
    assert "from $50,000.00" in printed.out
    summary = json.loads((out / "summary.json").read_text())
    (strategy,) = summary["run"]["strategies"]
    assert strategy["params"] == {"fast": 5, "slow": 20}
    assert summary["run"]["pricing"]["starting_cash"] == "50000"
    trades = (out / "trades.csv").read_text().splitlines()
    assert trades[0] == "time,symbol,side,qty,price,fees,strategy,reason"
    assert len(trades) - 1 == summary["metrics"]["fills"] > 0
    assert all(row.split(",")[5] == "0.10" for row in trades[1:])  # 10 shares * $0.01
    days = (out / "equity.csv").read_text().splitlines()
    assert [d.split(",")[0] for d in days[1:]] == ["2026-11-19", "2026-11-20"]
    assert days[-1].split(",")[1] == summary["metrics"]["final_equity"]
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "backtest: 100%" in printed.err


def test_backtest_when_start_given_then_days_before_only_warm_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"

    code = _run(tmp_path, "--csv", SAMPLE, "--start", "2026-11-20", "--out", str(out))

    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["run"]["start"], summary["bars"], summary["traded_bars"]) == (
        "2026-11-20",
        2340,
        1170,
    )
    rows = (out / "trades.csv").read_text().splitlines()[1:]
    assert rows
    assert all(row.startswith("2026-11-20") for row in rows)
    # Warm from the day before: a trade is possible from the first bar of the day on.
    assert rows[0] < "2026-11-20T15:00"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--strategy", "gold_cross"], "Cannot backtest: --strategy: not a built-in strategy"),
        (
            ["--param", "fats=3"],
            "Cannot backtest: --param fats: not a parameter of golden_cross (its parameters: "
            "fast, slow)",
        ),
        (["--param", "fast=-7"], "Cannot backtest: --param fast: Input should be greater than 0"),
        (
            ["--param", "fast=40"],
            "Cannot backtest: --param fast, --param slow: the fast length must be smaller",
        ),
        (["--days", "0"], "Cannot backtest: --days is a number of days"),
        (["--start", "2026-11-21", "--end", "2026-11-20"], "Cannot backtest: --start is after"),
    ],
)
def test_backtest_when_bad_request_then_one_line_exit_2_and_no_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    code = _run(tmp_path, "--csv", SAMPLE, *args)

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(line)
    assert "-7" not in err[0]
    assert not (tmp_path / "backtests").exists()


def test_backtest_when_a_row_is_bad_then_one_line_naming_it_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = SAMPLE_BARS_PATH.read_text().splitlines()
    lines[1500] = lines[1500].replace(lines[1500].split(",")[5], "abc")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")

    code = _run(tmp_path, "--csv", str(bad), "--progress", "none")

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"Cannot backtest: {bad}, line 1501: bad number in 'close': 'abc'"]
    assert not (tmp_path / "backtests").exists()


def test_backtest_when_json_progress_then_progress_lines_and_a_final_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(tmp_path, "--csv", SAMPLE, "--progress", "json")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    steps = [line["progress"] for line in lines[:-1]]
    assert len(steps) > 10
    assert steps == sorted(steps)
    assert steps[0] > 0
    assert steps[-1] < 1
    final = lines[-1]
    assert Path(final["report"], "equity.png").exists()
    assert final["done"]["metrics"]["fills"] > 0
    assert "Final equity" in final["text"]


def _cache_day(data_dir: Path, symbol: str, day: datetime, closes: list[int]) -> None:
    bars = [
        Bar(symbol, day + timedelta(minutes=i), *(Decimal(c),) * 4, Decimal(100))
        for i, c in enumerate(closes)
    ]
    HistoryCache(data_dir).store(symbol, day_span(day.date(), day.date()), bars)


def test_backtest_when_symbols_and_dates_then_reads_the_history_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = [b for b in load_bars_csv(SAMPLE_BARS_PATH) if b.symbol == "MSFT"]
    cache = HistoryCache(tmp_path)
    for first in (datetime(2026, 11, 19), datetime(2026, 11, 20)):
        day_bars = [b for b in sample if b.ts.date() == first.date()]
        cache.store("MSFT", day_span(first.date(), first.date()), day_bars)
    out = tmp_path / "report"

    code = _run(
        tmp_path, "--symbols", "MSFT", "--start", "2026-11-19", "--end", "2026-11-20",
        "--out", str(out),
    )  # fmt: skip

    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["source"].startswith("the history cache")
    assert summary["bars"] == 780
    rows = (out / "trades.csv").read_text().splitlines()[1:]
    assert rows
    assert {row.split(",")[1] for row in rows} == {"MSFT"}


def test_backtest_when_cache_lacks_the_symbols_then_says_how_to_fetch_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cache_day(tmp_path, "AAPL", datetime(2026, 11, 20, 14, 30, tzinfo=UTC), [100, 101])

    code = _run(tmp_path, "--symbols", "TSLA", "--start", "2026-11-19", "--end", "2026-11-20")

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "has no bars for TSLA from 2026-11-19 to 2026-11-20" in line
    assert line.endswith(
        "python run_bot.py fetch-bars --symbols TSLA --start 2026-11-19 --end 2026-11-20"
    )
