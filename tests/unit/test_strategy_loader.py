"""Loading configured strategies: one line per problem, naming the setting, never a value."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from config.strategies import StrategySlot
from engine.strategy import GoldenCross, GoldenCrossParams, StrategyConfigError, load_strategies

SECRETISH = "PKQ7X2VALUE9"
USER_MODULE = """
    from decimal import Decimal

    from pydantic import BaseModel

    from engine.domain import Bar
    from engine.strategy import Signal, Strategy


    class Params(BaseModel):
        window: int = 5


    class Revert(Strategy[Params]):
        Params = Params

        def on_bar(self, bar: Bar, position: Decimal) -> Signal | None:
            return None


    class NotAStrategy:
        pass
"""


def _slot(use: str, *, prefix: str = "STRATEGY_", **params: object) -> StrategySlot:
    return StrategySlot(
        name=None if prefix == "STRATEGY_" else prefix.split("_")[1].lower(),
        use=use,
        symbols=("AAPL",),
        order_qty=Decimal(10),
        long_only=True,
        params=params,
        prefix=prefix,
    )


def _problems(*slots: StrategySlot) -> tuple[str, ...]:
    with pytest.raises(StrategyConfigError) as caught:
        load_strategies(slots)
    return tuple(f"{setting}: {what}" for setting, what in caught.value.problems)


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package of the trader's own, importable as ``{name}.revert``; unique per test so
    the module cache never serves another test's version."""
    name = f"userstrats_{tmp_path.name.replace('-', '_')}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "revert.py").write_text(textwrap.dedent(USER_MODULE))
    (package / "broken.py").write_text("import engine\n\nvalue = undefined_name + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_load_when_built_in_short_name_then_class_and_params_from_text() -> None:
    (spec,) = load_strategies([_slot("golden_cross", fast="5", slow="12")])

    assert spec.cls is GoldenCross
    assert spec.name == "golden_cross"
    assert spec.params == GoldenCrossParams(fast=5, slow=12)
    assert spec.create("AAPL").warmup_bars == 13


def test_load_when_dotted_path_to_users_module_then_its_class_named_after_it(
    user_package: str,
) -> None:
    (colon,) = load_strategies([_slot(f"{user_package}.revert:Revert", window="7")])
    (dotted,) = load_strategies([_slot(f"{user_package}.revert.Revert")])

    assert colon.cls.__name__ == "Revert"
    assert colon.name == "revert"
    assert colon.params.model_dump() == {"window": 7}
    assert dotted.cls is colon.cls


def test_load_when_strategies_are_named_in_settings_then_that_name_is_used() -> None:
    (spec,) = load_strategies([_slot("golden_cross", prefix="STRATEGY_TREND__")])

    assert spec.name == "trend"


@pytest.mark.parametrize(
    ("use", "message"),
    [
        (f"{SECRETISH}.mod:Cls", "no module of that name can be imported"),
        (SECRETISH.lower(), "not a built-in strategy (those are golden_cross, vwap_reversion)"),
    ],
)
def test_load_when_name_cannot_be_imported_then_one_line_without_the_value(
    use: str, message: str
) -> None:
    (problem,) = _problems(_slot(use))

    assert problem.startswith(f"STRATEGY_NAME: {message}")
    assert SECRETISH.lower() not in problem.lower()


def test_load_when_module_fails_while_importing_then_error_and_where(user_package: str) -> None:
    (problem,) = _problems(_slot(f"{user_package}.broken:X", prefix="STRATEGY_TREND__"))

    assert problem.startswith(
        "STRATEGY_TREND__CLASS: importing the module failed: NameError: name 'undefined_name' "
        "is not defined ("
    )
    assert problem.endswith("broken.py:3)")
    assert "\n" not in problem


@pytest.mark.parametrize(
    ("attr", "message"),
    [("Missing", "the module has no class of that name"), ("NotAStrategy", "not a Strategy")],
)
def test_load_when_module_has_no_such_strategy_then_said(
    user_package: str, attr: str, message: str
) -> None:
    (problem,) = _problems(_slot(f"{user_package}.revert:{attr}"))

    assert message in problem


def test_load_when_parameter_unknown_then_named_with_the_known_ones() -> None:
    (problem,) = _problems(_slot("golden_cross", fastt="5"))

    assert problem == "STRATEGY_FASTT: not a parameter of golden_cross (its parameters: fast, slow)"


def test_load_when_parameters_invalid_then_every_one_named_and_no_value_shown() -> None:
    problems = _problems(
        _slot("golden_cross", fast=SECRETISH),
        _slot("golden_cross", prefix="STRATEGY_TREND__", fast="30", slow="30"),
    )

    assert problems == (
        "STRATEGY_FAST: Input should be a valid integer, unable to parse string as an integer",
        "STRATEGY_TREND__FAST, STRATEGY_TREND__SLOW: the fast length must be smaller than the "
        "slow one",
    )
    assert SECRETISH not in str(problems)


def test_load_when_constructor_raises_then_reported_as_a_setting_problem(
    user_package: str, tmp_path: Path
) -> None:
    module = tmp_path / user_package / "picky.py"
    module.write_text(
        textwrap.dedent(USER_MODULE)
        + "\n\nclass Picky(Revert):\n"
        + "    def __init__(self, params, symbol):\n"
        + "        raise ValueError('needs a data file')\n"
    )

    (problem,) = _problems(_slot(f"{user_package}.picky:Picky"))

    assert problem.startswith(
        "STRATEGY_NAME: creating the strategy failed: ValueError: needs a data file ("
    )
