"""The history cache: spans, atomic pages, and the simulator's replay reading it."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from config import SettingsError, load_settings
from engine.app import StartupError, build_app
from engine.backtest.history import MINUTE, HistoryCache, day_span
from engine.domain import Bar
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH
from tests.support.app import wait_for

DAY1, DAY2 = date(2026, 11, 19), date(2026, 11, 20)
SAMPLE = load_bars_csv(SAMPLE_BARS_PATH)


def test_missing_when_nothing_stored_then_the_whole_span() -> None:
    cache = HistoryCache(Path("/nonexistent"))
    start, end = day_span(DAY1, DAY2)
    assert cache.missing("AAPL", (start, end)) == [(start, end)]


def test_missing_when_pages_stored_then_only_what_they_do_not_cover(tmp_path: Path) -> None:
    cache = HistoryCache(tmp_path)
    start, end = day_span(DAY1, DAY2)
    first_end = start + timedelta(hours=10)
    second = (start + timedelta(hours=20), start + timedelta(hours=30))
    cache.store("AAPL", (start, first_end), [])
    cache.store("AAPL", second, [])

    assert cache.missing("AAPL", (start, end)) == [
        (first_end + MINUTE, second[0] - MINUTE),
        (second[1] + MINUTE, end),
    ]
    assert cache.missing("AAPL", (start, first_end)) == []


def test_store_when_a_bar_is_outside_the_span_or_another_symbol_then_nothing_is_written(
    tmp_path: Path,
) -> None:
    cache = HistoryCache(tmp_path)
    span = day_span(DAY1, DAY1)
    msft = next(b for b in SAMPLE if b.symbol == "MSFT")
    late = next(b for b in SAMPLE if b.symbol == "AAPL" and b.ts.date() == DAY2)

    for bars in ([msft], [late]):
        with pytest.raises(ValueError, match="outside"):
            cache.store("AAPL", span, bars)

    assert cache.chunks("AAPL") == []
    assert cache.missing("AAPL", span) == [span]


def test_bars_when_stored_in_pages_then_read_back_in_time_order_and_counted_per_day(
    tmp_path: Path,
) -> None:
    cache = HistoryCache(tmp_path)
    for symbol in ("AAPL", "SPY"):
        mine = [b for b in SAMPLE if b.symbol == symbol]
        cut = mine[500].ts
        start, end = day_span(DAY1, DAY2)
        cache.store(symbol, (start, cut - MINUTE), [b for b in mine if b.ts < cut])
        cache.store(symbol, (cut, end), [b for b in mine if b.ts >= cut])
    span = day_span(DAY1, DAY2)

    read = list(cache.bars(["SPY", "AAPL"], span))

    assert read == [b for b in SAMPLE if b.symbol in ("AAPL", "SPY")]
    assert cache.day_counts(["AAPL", "SPY"], span) == {DAY1: 780, DAY2: 780}
    assert cache.symbols() == ["AAPL", "SPY"]


def test_discard_partial_when_a_killed_write_left_a_part_file_then_removed(tmp_path: Path) -> None:
    cache = HistoryCache(tmp_path)
    folder = cache.root / "AAPL"
    folder.mkdir(parents=True)
    (folder / "20261119T0500Z_20261119T2000Z.part").write_text("timestamp,sym")

    assert cache.discard_partial("AAPL") == 1
    assert list(folder.iterdir()) == []


def _settings(data_dir: Path, **sim: object) -> object:
    return load_settings(
        None,
        mode="sim",
        sim={"replay_speed": "max", **sim},
        storage={"data_dir": data_dir},
        strategy={"symbols": "AAPL,MSFT"},
    )


def _fill_cache(data_dir: Path) -> None:
    cache = HistoryCache(data_dir)
    for symbol in ("AAPL", "MSFT"):
        cache.store(symbol, day_span(DAY1, DAY2), [b for b in SAMPLE if b.symbol == symbol])


@pytest.mark.slow
async def test_replay_when_replay_days_set_then_the_engine_replays_the_cache(
    tmp_path: Path,
) -> None:
    _fill_cache(tmp_path)
    settings = _settings(tmp_path, replay_start="2026-11-19", replay_end="2026-11-20")
    app = await build_app(settings)  # type: ignore[arg-type]
    await app.start()
    try:
        await wait_for(lambda: app.feed.health.finished, within=60)
        await app.engine.settle()
        fills = await app.journal.load_fills()
    finally:
        await app.stop()

    # The last day is replayed (the first one warms up), on the cache's bars.
    assert fills
    assert {f.ts.date() for f in fills} == {DAY2}
    assert {f.symbol for f in fills} <= {"AAPL", "MSFT"}
    assert app.feed.health.messages == 780


async def test_replay_when_the_cache_has_no_bars_then_cannot_start_saying_what_to_fetch(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, replay_start="2026-11-19", replay_end="2026-11-20")

    with pytest.raises(StartupError) as raised:
        await build_app(settings)  # type: ignore[arg-type]

    assert str(raised.value).endswith(
        "fetch them with python run_bot.py fetch-bars --symbols AAPL,MSFT --start 2026-11-19 "
        "--end 2026-11-20"
    )


@pytest.mark.parametrize(
    ("sim", "line"),
    [
        ({"replay_start": "2026-11-19"}, "SIM_REPLAY_START, SIM_REPLAY_END: set both or neither"),
        (
            {"replay_start": "2026-11-20", "replay_end": "2026-11-19"},
            "SIM_REPLAY_START: must not be after SIM_REPLAY_END",
        ),
        (
            {"replay_start": "2026-11-19", "replay_end": "2026-11-20", "replay_csv": "x.csv"},
            "SIM_REPLAY_CSV, SIM_REPLAY_START: a replay reads either a CSV or days",
        ),
    ],
)
def test_replay_settings_when_inconsistent_then_one_line_naming_them(
    tmp_path: Path, sim: dict[str, str], line: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        _settings(tmp_path, **sim)

    assert any(problem.startswith(line) for problem in raised.value.problems)


def test_bar_values_when_round_tripped_through_a_page_then_exact(tmp_path: Path) -> None:
    bar = Bar("AAPL", SAMPLE[0].ts, Decimal("0.0001"), Decimal("9999.9999"), Decimal("0.0001"),
              Decimal("12.5"), Decimal("1234567"))  # fmt: skip
    cache = HistoryCache(tmp_path)
    cache.store("AAPL", day_span(DAY1, DAY1), [bar])

    assert list(cache.bars(["AAPL"], day_span(DAY1, DAY1))) == [bar]
