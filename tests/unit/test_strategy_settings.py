"""Strategy settings from the environment and .env: one strategy or several."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from config import SettingsError, load_settings
from config.strategies import StrategySlot


@pytest.fixture(autouse=True)
def _no_dotenv_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


def _env(path: Path, **values: str) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def _problems(env_file: Path) -> tuple[str, ...]:
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file)
    return caught.value.problems


def test_load_when_nothing_set_then_golden_cross_on_the_demo_symbols() -> None:
    (slot,) = load_settings(None).strategy.slots

    assert slot == StrategySlot(
        name="golden_cross",
        use="golden_cross",
        symbols=("AAPL", "MSFT", "SPY"),
        order_qty=Decimal(10),
        long_only=True,
        params={},
        prefix="STRATEGY_",
    )


def test_load_when_single_strategy_parameters_set_then_collected_environment_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = _env(tmp_path / "s.env", STRATEGY_FAST="5", STRATEGY_SLOW="20")
    monkeypatch.setenv("STRATEGY_SLOW", "25")

    settings = load_settings(env_file)

    assert settings.strategy.slots[0].params == {"fast": "5", "slow": "25"}
    assert settings.redacted_summary()["STRATEGY_SLOW"] == "25"


def test_load_when_single_strategy_is_a_dotted_path_then_named_by_its_class_later() -> None:
    use = "tests.support.frame_golden_cross:FrameGoldenCross"

    settings = load_settings(None, strategy={"name": use})

    assert settings.strategy.slots[0].name is None
    assert settings.strategy.slots[0].use == use


def test_load_when_class_or_parameter_is_bad_then_a_settings_error_names_the_variable(
    tmp_path: Path,
) -> None:
    env_file = _env(
        tmp_path / "s.env",
        STRATEGIES="trend,revert",
        STRATEGY_TREND__CLASS="nosuchpackage.mod:Thing",
        STRATEGY_TREND__SYMBOLS="AAPL",
        STRATEGY_REVERT__CLASS="vwap_reversion",
        STRATEGY_REVERT__SYMBOLS="SPY",
        STRATEGY_REVERT__RSI_PERIOD="1",
    )

    problems = _problems(env_file)

    assert problems[0].startswith("STRATEGY_TREND__CLASS: no module of that name can be imported")
    assert problems[1] == "STRATEGY_REVERT__RSI_PERIOD: Input should be greater than 1"
    assert "nosuchpackage" not in " ".join(problems)


def test_load_when_several_strategies_in_dotenv_then_each_with_its_own_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = _env(
        tmp_path / "s.env",
        STRATEGIES="trend, revert",
        STRATEGY_TREND__CLASS="golden_cross",
        STRATEGY_TREND__SYMBOLS="aapl,msft",
        STRATEGY_TREND__FAST="5",
        STRATEGY_REVERT__CLASS="vwap_reversion",
        STRATEGY_REVERT__SYMBOLS="SPY",
        STRATEGY_REVERT__ORDER_QTY="3",
        STRATEGY_REVERT__LONG_ONLY="false",
        STRATEGY_FAST="7",  # the single strategy's: not used when STRATEGIES is set
    )
    monkeypatch.setenv("STRATEGY_TREND__FAST", "6")

    settings = load_settings(env_file)

    trend, revert = settings.strategy.slots
    assert (trend.name, trend.use, trend.symbols) == ("trend", "golden_cross", ("AAPL", "MSFT"))
    assert trend.params == {"fast": "6"}
    assert (trend.order_qty, trend.long_only) == (Decimal(10), True)
    assert (revert.name, revert.symbols, revert.params) == ("revert", ("SPY",), {})
    assert (revert.order_qty, revert.long_only) == (Decimal(3), False)
    assert revert.setting("oversold") == "STRATEGY_REVERT__OVERSOLD"
    assert settings.allowed_symbols == ["AAPL", "MSFT", "SPY"]


def test_load_when_symbol_claimed_by_two_strategies_then_error_names_both_settings(
    tmp_path: Path,
) -> None:
    env_file = _env(
        tmp_path / "s.env",
        STRATEGIES="trend,revert",
        STRATEGY_TREND__CLASS="golden_cross",
        STRATEGY_TREND__SYMBOLS="AAPL,MSFT",
        STRATEGY_REVERT__CLASS="vwap_reversion",
        STRATEGY_REVERT__SYMBOLS="SPY,msft",
    )

    assert _problems(env_file) == (
        "STRATEGY_REVERT__SYMBOLS: MSFT is already traded by strategy trend "
        "(STRATEGY_TREND__SYMBOLS); a symbol belongs to one strategy",
    )


def test_load_when_listed_strategy_lacks_class_or_symbols_then_each_named(tmp_path: Path) -> None:
    env_file = _env(
        tmp_path / "s.env",
        STRATEGIES="trend,revert",
        STRATEGY_TREND__SYMBOLS="AAPL",
        STRATEGY_REVERT__CLASS="vwap_reversion",
        STRATEGY_REVERT__ORDER_QTY="0",
    )

    problems = _problems(env_file)

    assert problems[0].startswith("STRATEGY_TREND__CLASS: required")
    assert problems[1] == "STRATEGY_REVERT__SYMBOLS: Field required"
    assert problems[2] == "STRATEGY_REVERT__ORDER_QTY: Input should be greater than 0"


def test_load_when_variables_name_an_unlisted_strategy_then_error(tmp_path: Path) -> None:
    env_file = _env(tmp_path / "s.env", STRATEGY_TREDN__SYMBOLS="AAPL")

    assert _problems(env_file) == (
        "STRATEGY_TREDN__*: strategy 'tredn' is not listed in STRATEGIES",
    )


@pytest.mark.parametrize("names", ["trend,Trend", "two words", "a__b", "9lives"])
def test_load_when_strategies_names_malformed_then_error_names_strategies(
    tmp_path: Path, names: str
) -> None:
    (problem,) = _problems(_env(tmp_path / "s.env", STRATEGIES=names))

    assert problem.startswith("STRATEGIES: ")
