"""fetch-bars end to end: alpaca-py's historical client against the fake Alpaca server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from config import Settings, load_settings
from engine.backtest.fetch import BarsClient, FetchReport, fetch_history, parse_page
from engine.backtest.history import HistoryCache, day_span
from engine.broker.alpaca.factory import history_client
from engine.broker.resilience import RequestBudget, RetryPolicy
from engine.domain import Bar
from engine.errors import BrokerError
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH
from tests.fakes.alpaca import FakeAlpaca
from tests.support.app import wait_for
from tests.support.console_proc import REPO

SYMBOLS = ("AAPL", "MSFT")
HISTORY = [b for b in load_bars_csv(SAMPLE_BARS_PATH) if b.symbol in SYMBOLS]
SPAN = day_span(date(2026, 11, 19), date(2026, 11, 20))
QUICK_RETRY = RetryPolicy(attempts=2, base_s=0.01, cap_s=0.01)
PAGE = 500  # 780 bars a symbol: pages of 500 and 280


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    async with FakeAlpaca(history=HISTORY) as server:
        yield server


def _settings(fake: FakeAlpaca, data_dir: Path) -> Settings:
    alpaca = {
        "api_key": fake.key_id,
        "secret_key": fake.secret_key,
        "data_url": fake.data_url,
        "request_timeout_s": 2.0,
    }
    return load_settings(None, mode="paper", alpaca=alpaca, storage={"data_dir": data_dir})


def _client(settings: Settings) -> BarsClient:
    alpaca = settings.alpaca
    return BarsClient(lambda: history_client(alpaca), feed="iex", timeout_s=2.0)


def _bar_requests(fake: FakeAlpaca) -> int:
    return sum(1 for _, path in fake.requests if path == "/v2/stocks/bars")


async def _fetch(
    fake: FakeAlpaca, data_dir: Path, budget: RequestBudget | None = None, **kw: object
) -> FetchReport:
    client = _client(_settings(fake, data_dir))
    try:
        return await fetch_history(
            client,
            HistoryCache(data_dir),
            SYMBOLS,
            SPAN,
            budget=budget or RequestBudget(per_minute=10_000, monotonic=time.monotonic),
            retry=QUICK_RETRY,
            page_limit=PAGE,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        client.close()


def _cached(data_dir: Path) -> list[Bar]:
    return list(HistoryCache(data_dir).bars(SYMBOLS, SPAN))


def _assert_spans_disjoint(data_dir: Path) -> None:
    cache = HistoryCache(data_dir)
    for symbol in SYMBOLS:
        chunks = cache.chunks(symbol)
        assert all(a.last < b.first for a, b in itertools.pairwise(chunks))
        assert not list((cache.root / symbol).glob("*.part"))


async def test_fetch_when_run_then_pages_through_and_a_rerun_fetches_nothing(
    fake: FakeAlpaca, tmp_path: Path
) -> None:
    first = await _fetch(fake, tmp_path)
    requests = _bar_requests(fake)
    again = await _fetch(fake, tmp_path)

    assert (first.pages, first.bars) == (4, {"AAPL": 780, "MSFT": 780})
    assert requests == 4
    assert _cached(tmp_path) == sorted(HISTORY, key=lambda b: (b.ts, b.symbol))
    assert (again.pages, again.complete) == (0, ["AAPL", "MSFT"])
    assert _bar_requests(fake) == requests  # nothing asked twice
    _assert_spans_disjoint(tmp_path)


async def test_fetch_when_the_server_fails_half_way_then_a_rerun_fetches_only_the_rest(
    fake: FakeAlpaca, tmp_path: Path
) -> None:
    def fail_after_two(symbol: str, bars: int, total: int) -> None:
        if len(list(HistoryCache(tmp_path).root.glob("*/*.csv"))) == 2:
            fake.knobs.error_rate = 1.0

    with pytest.raises(BrokerError, match="server error 500"):
        await _fetch(fake, tmp_path, on_page=fail_after_two)
    stored = len(list(HistoryCache(tmp_path).root.glob("*/*.csv")))
    failed = _bar_requests(fake) - 2
    fake.knobs.error_rate = 0.0

    rest = await _fetch(fake, tmp_path)

    assert (stored, failed) == (2, QUICK_RETRY.attempts)
    assert rest.pages == 2  # 4 pages in all: the 2 stored are not asked for again
    assert _bar_requests(fake) == 2 + failed + 2
    assert _cached(tmp_path) == sorted(HISTORY, key=lambda b: (b.ts, b.symbol))
    _assert_spans_disjoint(tmp_path)


async def test_fetch_when_the_budget_is_two_a_minute_then_requests_wait_for_the_window(
    fake: FakeAlpaca, tmp_path: Path
) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    budget = RequestBudget(per_minute=2, monotonic=lambda: now[0], sleep=sleep)

    await _fetch(fake, tmp_path, budget)

    # Four requests at two a minute: the third and fourth wait for the first two to age out.
    assert budget.granted == 4
    assert budget.waited_s == pytest.approx(60.0)
    assert _cached(tmp_path) == sorted(HISTORY, key=lambda b: (b.ts, b.symbol))


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ({"AAPL": [{"t": "2026-11-19T14:30:00Z", "o": 1}]}, "bar 0"),
        ({"AAPL": "nope"}, "no list of bars"),
        (
            {
                "AAPL": [
                    {"t": "2026-11-19T14:31:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1},
                    {"t": "2026-11-19T14:30:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1},
                ]
            },
            "out of order",
        ),
        (
            {"AAPL": [{"t": "2026-12-01T14:30:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}]},
            "outside the span",
        ),
    ],
)
def test_page_when_the_reply_is_not_clean_bars_then_refused(rows: object, problem: str) -> None:
    with pytest.raises(BrokerError, match=problem):
        parse_page("AAPL", rows, *SPAN)


def _command(fake: FakeAlpaca, data_dir: Path) -> list[str]:
    return [
        sys.executable, "run_bot.py", "fetch-bars", "--env-file", "/dev/null",
        "--data-dir", str(data_dir), "--symbols", ",".join(SYMBOLS),
        "--start", "2026-11-19", "--end", "2026-11-20", "--page-size", "200",
    ]  # fmt: skip


def _pages(data_dir: Path) -> int:
    return len(list(data_dir.glob("history/iex/*/*.csv")))


def _env(fake: FakeAlpaca) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "APCA_"))}
    env |= {
        "APCA_API_KEY_ID": fake.key_id,
        "APCA_API_SECRET_KEY": fake.secret_key,
        "ALPACA_DATA_URL": fake.data_url,
    }
    return env


@pytest.mark.slow
async def test_fetch_bars_when_killed_mid_download_then_a_rerun_completes_nothing_twice(
    fake: FakeAlpaca, tmp_path: Path
) -> None:
    fake.knobs.latency_ms = 150
    proc = await asyncio.create_subprocess_exec(
        *_command(fake, tmp_path), cwd=REPO, env=_env(fake),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_for(lambda: _pages(tmp_path) >= 3, within=60)
        proc.send_signal(signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    stored = _pages(tmp_path)
    before = _bar_requests(fake)
    fake.knobs.latency_ms = 0

    rerun = await asyncio.create_subprocess_exec(
        *_command(fake, tmp_path), cwd=REPO, env=_env(fake),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await rerun.communicate()

    assert rerun.returncode == 0, err.decode()
    assert 3 <= stored < 8  # 780 bars a symbol in pages of 200: 4 pages each
    # Every page stored before the kill stays; at most the one in flight is asked again.
    assert _bar_requests(fake) - before <= 8 - stored + 1
    assert _cached(tmp_path) == sorted(HISTORY, key=lambda b: (b.ts, b.symbol))
    _assert_spans_disjoint(tmp_path)
    assert "780 bars fetched" in out.decode() or "already in the cache" in out.decode()


async def test_fetch_bars_when_no_api_keys_then_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from run_bot import main

    code = await asyncio.to_thread(
        main,
        ["fetch-bars", "--env-file", "/dev/null", "--data-dir", str(tmp_path),
         "--symbols", "AAPL", "--start", "2026-11-19", "--end", "2026-11-20"],
    )  # fmt: skip

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert line.startswith("Cannot fetch bars: APCA_API_KEY_ID and APCA_API_SECRET_KEY are")
