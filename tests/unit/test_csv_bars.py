from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain import Bar
from engine.feed import csv_bars
from engine.feed.base import RUN_BARS
from engine.feed.csv_bars import BarDataError, CsvBars, iter_runs_csv, load_bars_csv

HEADER = "timestamp,symbol,open,high,low,close,volume"


def _write(tmp_path: Path, lines: list[str], name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_when_combined_file_then_bars_are_decimal_utc_and_sorted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-19T14:31:00Z,AAPL,230.10,230.50,230.00,230.40,1200",
            "2026-11-19T09:30:00-05:00,msft,420.00,421.00,419.50,420.25,800",
            "2026-11-19T14:30:00Z,AAPL,230.00,230.20,229.90,230.10,1000",
        ],
    )

    bars = load_bars_csv(path)

    assert [(b.ts.strftime("%H:%M"), b.symbol) for b in bars] == [
        ("14:30", "AAPL"),
        ("14:30", "MSFT"),
        ("14:31", "AAPL"),
    ]
    msft = bars[1]
    assert msft.ts == datetime(2026, 11, 19, 14, 30, tzinfo=UTC)
    assert msft.ts.tzinfo is UTC
    assert (msft.open, msft.high, msft.low, msft.close, msft.volume) == (
        Decimal("420.00"),
        Decimal("421.00"),
        Decimal("419.50"),
        Decimal("420.25"),
        Decimal(800),
    )
    assert isinstance(msft.close, Decimal)


def test_load_when_no_symbol_column_then_symbol_comes_from_file_name(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            "timestamp,open,high,low,close,volume,vwap",
            "2026-11-19T14:30:00Z,230.00,230.20,229.90,230.10,1000,230.05",
            "2026-11-19T14:31:00Z,230.10,230.50,230.00,230.40,1200,230.30",
        ],
        name="aapl.csv",
    )

    bars = load_bars_csv(path)

    assert [b.symbol for b in bars] == ["AAPL", "AAPL"]
    assert bars[1].close == Decimal("230.40")


def test_load_when_bom_and_blank_lines_then_they_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "\ufeff" + HEADER + "\n\n2026-11-19T14:30:00Z,SPY,590,591,589,590.5,10\n\n",
        encoding="utf-8",
    )

    bars = load_bars_csv(path)

    assert len(bars) == 1
    assert bars[0].close == Decimal("590.5")


BAD_ROWS = [
    ("2026-11-19T14:31:00Z,AAPL,abc,230.5,230,230.4,1", "bad number in 'open': 'abc'"),
    ("2026-11-19T14:31:00Z,AAPL,230.1,229,230,229.5,1", "high 229 is below low 230"),
    ("2026-11-19T14:31:00Z,AAPL,230.1,230.5,230,230.9,1", "close 230.9 is outside [low 230"),
    ("2026-11-19T14:31:00Z,AAPL,231.1,231.5,231,231.2,-5", "negative volume -5"),
    ("2026-11-19T14:31:00,AAPL,230.1,230.5,230,230.4,1", "naive datetime"),
    ("yesterday,AAPL,230.1,230.5,230,230.4,1", "'yesterday' is not an ISO-8601 timestamp"),
    ("2026-11-19T14:31:00Z,AAPL,230.1,230.5,230", "expected 7 fields, found 5"),
    ("2026-11-19T14:31:00Z, ,230.1,230.5,230,230.4,1", "empty symbol"),
    ("2026-11-19T14:31:00Z,AAPL,0,230.5,0,230.4,1", "prices must be positive"),
    ("2026-11-19T14:31:00Z,AAPL,229.9,230.5,230,230.4,1", "open 229.9 is outside [low 230"),
    ("2026-11-19T14:31:00Z,AAPL,230.1,230.5,230,NaN,1", "bad number in 'close': 'NaN'"),
    ("2026-11-19T14:31:00Z,AAPL,230.1,230.5,230,230.2,Infinity", "bad number in 'volume'"),
    ("2026-11-19T14:31:00Z,AAPL,230.1,230.5,-230,230.2,1", "prices must be positive"),
]


@pytest.mark.parametrize(("row", "problem"), BAD_ROWS)
def test_load_when_row_is_invalid_then_error_names_file_line_and_problem(
    tmp_path: Path, row: str, problem: str
) -> None:
    path = _write(
        tmp_path,
        [HEADER, "2026-11-19T14:30:00Z,AAPL,230.00,230.20,229.90,230.10,1000", row],
    )

    with pytest.raises(BarDataError) as caught:
        load_bars_csv(path)

    message = str(caught.value)
    assert message.startswith(f"{path}, line 3: ")
    assert problem in message
    assert caught.value.line == 3


def test_load_when_column_is_missing_then_error_names_the_column(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        ["timestamp,symbol,open,high,low,volume", "2026-11-19T14:30:00Z,AAPL,1,1,1,1"],
    )

    with pytest.raises(BarDataError, match=r"line 1: missing column 'close'"):
        load_bars_csv(path)


def test_load_when_bar_is_duplicated_then_error_points_at_both_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-19T14:30:00Z,AAPL,230.00,230.20,229.90,230.10,1000",
            "2026-11-19T14:30:00Z,MSFT,420.00,421.00,419.50,420.25,800",
            "2026-11-19T09:30:00-05:00,AAPL,230.00,230.20,229.90,230.10,1000",
        ],
    )

    with pytest.raises(BarDataError) as caught:
        load_bars_csv(path)

    assert str(caught.value) == (
        f"{path}, line 4: duplicate bar for AAPL at 2026-11-19T14:30:00+00:00 "
        "(first seen on line 2)"
    )


def test_load_when_file_is_empty_or_header_only_then_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    header_only = _write(tmp_path, [HEADER], name="header.csv")

    with pytest.raises(BarDataError, match="empty file"):
        load_bars_csv(empty)
    with pytest.raises(BarDataError, match="no bars"):
        load_bars_csv(header_only)


def test_load_when_file_is_missing_then_bar_data_error(tmp_path: Path) -> None:
    with pytest.raises(BarDataError, match=r"nowhere\.csv: cannot read file"):
        load_bars_csv(tmp_path / "nowhere.csv")


def test_bar_data_error_is_a_value_error() -> None:
    assert issubclass(BarDataError, ValueError)


# --- CsvBars: the streamed replay source ----------------------------------------------


def test_csv_bars_when_file_sorted_by_time_then_streamed_not_held(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-19T14:30:00Z,MSFT,420,421,419,420,800",
            "2026-11-19T14:30:00Z,AAPL,230,231,229,230,1000",
            "2026-11-20T14:30:00Z,AAPL,231,232,230,231,1000",
            "2026-11-20T14:31:00Z,AAPL,232,233,231,232,1000",
        ],
    )

    source = CsvBars(path)

    assert source.held is None
    assert dict(source.counts) == {"MSFT": 1, "AAPL": 3}
    assert source.last_session_start == datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    assert [b.close for b in source.bars()] == [Decimal(v) for v in (420, 230, 231, 232)]
    later = source.bars(datetime(2026, 11, 20, 14, 31, tzinfo=UTC))
    assert [b.close for b in later] == [Decimal(232)]


def test_csv_bars_when_file_not_sorted_by_time_then_held_sorted_in_memory(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-19T14:31:00Z,AAPL,231,232,230,231,1000",
            "2026-11-19T14:30:00Z,AAPL,230,231,229,230,1000",
        ],
    )

    source = CsvBars(path)

    assert source.held == load_bars_csv(path)
    assert [b.close for b in source.bars()] == [Decimal(230), Decimal(231)]


def test_csv_bars_when_duplicate_in_sorted_file_then_error_names_both_lines(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-19T14:30:00Z,AAPL,230,231,229,230,1000",
            "2026-11-19T14:30:00Z,MSFT,420,421,419,420,800",
            "2026-11-19T14:30:00Z,aapl,230,231,229,230,1000",
        ],
    )

    with pytest.raises(BarDataError, match=r"line 4: duplicate bar for AAPL .* line 2\)"):
        CsvBars(path)


def test_csv_bars_when_pass_starts_on_a_later_day_then_earlier_days_are_not_even_parsed(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-18T14:30:00Z,AAPL,229,230,228,229,1000",
            "",
            "2026-11-19T14:30:00Z,AAPL,230,231,229,230,1000",
            "2026-11-20T14:30:00Z,AAPL,231,232,230,231,1000",
            "2026-11-20T14:31:00Z,AAPL,232,233,231,232,1000",
        ],
    )
    source = CsvBars(path)
    # Spoil the first two days after the scan, keeping every line's length.
    text = path.read_text().replace("229,230,228,229", "xxx,230,228,229")
    path.write_text(text.replace("230,231,229,230", "230,yyy,229,230"))

    from_day3 = source.bars(datetime(2026, 11, 20, 14, 31, tzinfo=UTC))

    assert [b.close for b in from_day3] == [Decimal(232)]
    with pytest.raises(BarDataError, match="line 2: bad number in 'open'"):
        list(source.bars())


def test_load_when_first_row_has_no_timestamp_then_error(tmp_path: Path) -> None:
    # Before: the first row's empty cell matched the parser's initial "no timestamp yet"
    # and the bar came back with a naive datetime.min.
    path = _write(tmp_path, [HEADER, ",AAPL,230.00,230.20,229.90,230.10,1000"])

    with pytest.raises(BarDataError, match=r"line 2: .*'' is not an ISO-8601 timestamp"):
        load_bars_csv(path)


def test_load_then_bars_are_frozen_and_equal_to_bars_built_directly(tmp_path: Path) -> None:
    path = _write(tmp_path, [HEADER, "2026-11-19T14:30:00Z,AAPL,230.00,230.20,229.90,230.10,1000"])

    (bar,) = load_bars_csv(path)
    direct = Bar(
        "AAPL",
        datetime(2026, 11, 19, 14, 30, tzinfo=UTC),
        Decimal("230.00"),
        Decimal("230.20"),
        Decimal("229.90"),
        Decimal("230.10"),
        Decimal("1000"),
    )

    assert bar == direct
    assert hash(bar) == hash(direct)
    assert repr(bar) == repr(direct)
    with pytest.raises(FrozenInstanceError):
        bar.close = Decimal(1)  # type: ignore[misc]


# --- runs: the replay's pass ------------------------------------------------------------


@pytest.mark.parametrize(("row", "problem"), BAD_ROWS)
def test_runs_when_row_is_invalid_then_same_error_as_loading_names_file_and_line(
    tmp_path: Path, row: str, problem: str
) -> None:
    path = _write(
        tmp_path,
        [HEADER, "2026-11-19T14:30:00Z,AAPL,230.00,230.20,229.90,230.10,1000", "", row],
    )
    with pytest.raises(BarDataError) as loading:
        load_bars_csv(path)

    with pytest.raises(BarDataError) as replaying:
        list(iter_runs_csv(path, None))

    assert str(replaying.value) == str(loading.value)
    assert str(replaying.value).startswith(f"{path}, line 4: ")
    assert problem in str(replaying.value)


def test_runs_when_file_changed_after_the_scan_then_the_pass_names_the_bad_line(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-19T14:30:00Z,AAPL,230,231,229,230,1000",
            "2026-11-19T14:31:00Z,AAPL,230,231,229,230,1000",
        ],
    )
    source = CsvBars(path)
    path.write_text(path.read_text().replace("14:31:00Z,AAPL,230,231", "14:31:00Z,AAPL,230,2x1"))

    runs = source.runs(None)

    assert [b.close for b in next(runs)] == [Decimal(230)]
    with pytest.raises(BarDataError, match=r"bars.csv, line 3: bad number in 'high': '2x1'"):
        next(runs)


def test_runs_then_the_bars_of_bars_in_runs_of_one_timestamp_each(tmp_path: Path) -> None:
    symbols = [f"S{i:03d}" for i in range(RUN_BARS + 6)]
    lines = ["\ufeff" + HEADER, ""]
    for minute in (30, 31):
        lines += [f"2026-11-19T14:{minute}:00Z,{s.lower()},2,3,1,2,5" for s in symbols]
        lines.append("")
    path = _write(tmp_path, lines)
    source = CsvBars(path)

    runs = list(source.runs(None))

    assert [len(r) for r in runs] == [RUN_BARS, 6, RUN_BARS, 6]
    assert all(len({b.ts for b in r}) == 1 for r in runs)
    assert [b for r in runs for b in r] == list(source.bars()) == load_bars_csv(path)
    later = datetime(2026, 11, 19, 14, 31, tzinfo=UTC)
    assert [b for r in source.runs(later) for b in r] == list(source.bars(later))


def test_runs_when_symbols_given_then_only_theirs(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "2026-11-19T14:30:00Z,AAPL,230,231,229,230,1000",
            "2026-11-19T14:30:00Z,MSFT,420,421,419,420,800",
            "2026-11-19T14:31:00Z,msft,421,422,420,421,800",
        ],
    )
    single = _write(
        tmp_path,
        [HEADER.replace("symbol,", ""), "2026-11-19T14:30:00Z,1,1,1,1,1"],
        name="spy.csv",
    )

    assert [(b.symbol, b.close) for r in CsvBars(path).runs(None, {"MSFT"}) for b in r] == [
        ("MSFT", Decimal(420)),
        ("MSFT", Decimal(421)),
    ]
    assert list(iter_runs_csv(single, None, {"AAPL"})) == []
    assert [b.symbol for r in iter_runs_csv(single, None, {"SPY"}) for b in r] == ["SPY"]


EARLIER_DAY = [f"2026-11-18T14:{m:02d}:00Z,AAPL,2,3,1,2,5" for m in range(25)]
LAST_DAY = ["2026-11-19T14:30:00Z,AAPL,2,3,1,2,7", "2026-11-19T14:31:00Z,AAPL,2,3,1,2,8"]
LAST_DAY_STARTS = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_runs_when_pass_starts_on_a_later_day_then_it_seeks_past_the_earlier_ones(
    tmp_path: Path, newline: str
) -> None:
    path = tmp_path / "bars.csv"
    first = datetime(2026, 11, 18, 14, 30, tzinfo=UTC)
    earlier = [f"{(first + timedelta(minutes=m)).isoformat()},AAPL,2,3,1,2,5" for m in range(390)]
    path.write_bytes(newline.join(["\ufeff" + HEADER, *earlier, "", *LAST_DAY, ""]).encode())
    source = CsvBars(path)
    # Spoil the end of the earlier day (past what reading the header decodes) after the
    # scan, with bytes that are not even UTF-8, keeping the lengths: reading past those
    # lines would fail on them.
    data = path.read_bytes()
    path.write_bytes(data.replace(b"2026-11-18T20", b"\xff\xfe26-11-18T20"))

    runs = list(source.runs(LAST_DAY_STARTS))

    assert [[b.volume for b in r] for r in runs] == [[Decimal(7)], [Decimal(8)]]
    with pytest.raises(BarDataError, match="not a UTF-8 text file"):
        list(source.runs(None))


def test_runs_when_lines_end_in_a_bare_cr_then_read_past_with_empty_runs_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old Mac line ends: only the text reader counts these lines right, so nothing is sought.
    monkeypatch.setattr(csv_bars, "SKIP_BLOCK", 10)
    path = tmp_path / "bars.csv"
    path.write_text("\r".join([HEADER, *EARLIER_DAY, *LAST_DAY, ""]), newline="")
    source = CsvBars(path)

    runs = list(source.runs(LAST_DAY_STARTS))

    assert runs[:3] == [[], [], []]  # 25 lines read past unparsed, 10 at a time
    assert [[b.volume for b in r] for r in runs[3:]] == [[Decimal(7)], [Decimal(8)]]


def test_runs_then_bars_are_frozen_and_equal_to_bars_built_directly(tmp_path: Path) -> None:
    path = _write(tmp_path, [HEADER, "2026-11-19T14:30:00Z,AAPL,230.00,230.20,229.90,230.10,1000"])

    ((bar,),) = CsvBars(path).runs(None)
    direct = Bar(
        "AAPL",
        datetime(2026, 11, 19, 14, 30, tzinfo=UTC),
        Decimal("230.00"),
        Decimal("230.20"),
        Decimal("229.90"),
        Decimal("230.10"),
        Decimal("1000"),
    )

    assert type(bar) is Bar
    assert bar == direct
    assert hash(bar) == hash(direct)
    assert repr(bar) == repr(direct)
    with pytest.raises(FrozenInstanceError):
        bar.close = Decimal(1)  # type: ignore[misc]
