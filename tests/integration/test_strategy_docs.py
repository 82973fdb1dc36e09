"""docs/strategies.md stays true: its example files are the repo's, their tests pass, its
settings load, and the example strategy trades the sample replay once enabled."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from config import load_settings
from engine.domain import Side
from tests.support.app import sim_settings, start_app

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "strategies.md"
EXAMPLE = re.compile(r"<!-- example: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```", re.S)
SYMBOLS = ("AAPL", "MSFT")
ENV_BLOCK = re.compile(r"```\n(?P<body>(?:[A-Z_]+=.*\n)+)```")


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "examples"))


def _env_blocks() -> list[dict[str, str]]:
    return [
        dict(line.split("=", 1) for line in m["body"].splitlines())
        for m in ENV_BLOCK.finditer(DOC.read_text())
    ]


def test_doc_when_it_shows_an_example_file_then_it_is_that_file_verbatim() -> None:
    shown = {m["path"]: m["code"] for m in EXAMPLE.finditer(DOC.read_text())}

    assert set(shown) == {
        "examples/mystrategies/mean_revert.py",
        "examples/mystrategies/test_mean_revert.py",
    }
    for path, code in shown.items():
        assert (REPO / path).read_text() == code, path


def test_doc_example_tests_when_run_then_they_pass() -> None:
    module = importlib.import_module("mystrategies.test_mean_revert")
    tests: list[Callable[[], None]] = [
        getattr(module, name) for name in dir(module) if name.startswith("test_")
    ]

    assert len(tests) == 2
    for test in tests:
        test()


def _env_file(path: Path, variables: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
    return path


def test_doc_settings_when_loaded_then_both_forms_validate(tmp_path: Path) -> None:
    single, several = _env_blocks()

    (one,) = load_settings(_env_file(tmp_path / "one.env", single)).strategy.slots
    trend, dips = load_settings(_env_file(tmp_path / "two.env", several)).strategy.slots

    assert (one.use, one.symbols, one.params) == (
        "mystrategies.mean_revert:MeanRevert",
        ("AAPL", "MSFT"),
        {"window": "30", "dip_pct": "0.4"},
    )
    assert (trend.name, trend.use, dips.name, dips.symbols) == (
        "trend",
        "golden_cross",
        "dips",
        ("SPY",),
    )


async def test_doc_strategy_when_enabled_as_the_doc_says_then_it_trades_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single, _ = _env_blocks()
    for name, value in single.items():
        monkeypatch.setenv(name, value)
    app = await start_app(sim_settings(tmp_path))
    try:
        orders = await app.journal.load_orders()
        fills = await app.journal.load_fills()
        entries = {s: getattr(app.engine.strategies.instance(s), "entry", None) for s in SYMBOLS}
    finally:
        await app.stop()

    assert orders, "the example strategy should trade the sample morning"
    assert {o.strategy for o in orders} == {"mean_revert"}
    assert {o.symbol for o in orders} <= set(SYMBOLS)
    # on_fill reached the instance trading each symbol: it remembers its last buy price.
    assert any(f.side is Side.BUY for f in fills)
    for symbol in SYMBOLS:
        buys = [f.price for f in fills if f.symbol == symbol and f.side is Side.BUY]
        assert entries[symbol] == (buys[-1] if buys else None), symbol
