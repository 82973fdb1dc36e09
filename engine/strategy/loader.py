"""From settings to strategy classes: built-ins by short name, anything else by
``package.module:Class``; parameters validated by the class's own ``Params`` model.

Every problem is one line naming the setting (``STRATEGY_TREND__FAST: Input should be
greater than 0``), never a traceback and never the value given (a secret pasted into the
wrong variable must not reach a log).
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from config.strategies import StrategySlot
from engine.strategy.base import Strategy

BUILT_IN = {
    "golden_cross": "engine.strategy.golden_cross:GoldenCross",
    "vwap_reversion": "engine.strategy.vwap_reversion:VWAPReversion",
}


Problem = tuple[str, str]
"""``(setting, what is wrong)``."""


class StrategyConfigError(ValueError):
    """A configured strategy cannot be loaded: ``problems`` names each setting."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{setting}: {what}" for setting, what in self.problems))


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A strategy ready to run: its class, validated parameters and what it trades."""

    name: str
    cls: type[Strategy[Any]]
    params: BaseModel
    symbols: tuple[str, ...]
    order_qty: Decimal
    long_only: bool

    def create(self, symbol: str) -> Strategy[Any]:
        return self.cls(self.params, symbol)


def load_strategies(slots: Sequence[StrategySlot]) -> list[StrategySpec]:
    """Import and validate every slot; raises ``StrategyConfigError`` listing all problems."""
    problems: list[Problem] = []
    specs: list[StrategySpec] = []
    for slot in slots:
        spec = _load(slot, problems)
        if spec is not None:
            specs.append(spec)
    if problems:
        raise StrategyConfigError(problems)
    return specs


def _load(slot: StrategySlot, problems: list[Problem]) -> StrategySpec | None:
    use_setting = slot.setting("name" if slot.prefix == "STRATEGY_" else "class")
    try:
        cls = resolve(slot.use)
    except LookupError as exc:
        problems.append((use_setting, str(exc)))
        return None
    unknown = sorted(set(slot.params) - set(cls.Params.model_fields))
    for key in unknown:
        known = ", ".join(cls.Params.model_fields) or "none"
        problems.append(
            (slot.setting(key), f"not a parameter of {cls.name} (its parameters: {known})")
        )
    if unknown:
        return None
    try:
        params = cls.Params.model_validate(dict(slot.params))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            fields = getattr(error.get("ctx", {}).get("error"), "fields", ())
            named = [str(f) for f in (error["loc"][:1] or fields)]
            where = ", ".join(slot.setting(f) for f in named) or f"{slot.prefix}*"
            problems.append((where, error["msg"].removeprefix("Value error, ")))
        return None
    spec = StrategySpec(
        name=slot.name or cls.name,
        cls=cls,
        params=params,
        symbols=slot.symbols,
        order_qty=slot.order_qty,
        long_only=slot.long_only,
    )
    try:
        for symbol in spec.symbols:
            int(spec.create(symbol).warmup_bars)
    except Exception as exc:
        problems.append((use_setting, f"creating the strategy failed: {_describe(exc)}"))
        return None
    return spec


def resolve(use: str) -> type[Strategy[Any]]:
    """The class ``use`` names; ``LookupError`` says why not without repeating ``use``."""
    path = BUILT_IN.get(use, use)
    if ":" in path:
        module_name, _, attr = path.partition(":")
    elif "." in path:
        module_name, _, attr = path.rpartition(".")
    else:
        names = ", ".join(BUILT_IN)
        raise LookupError(
            f"not a built-in strategy (those are {names}); name your own as package.module:Class"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise LookupError(
                "no module of that name can be imported (is its folder the working "
                "directory or on PYTHONPATH? see docs/strategies.md)"
            ) from None
        raise LookupError(f"importing the module failed: {_describe(exc)}") from None
    except Exception as exc:
        raise LookupError(f"importing the module failed: {_describe(exc)}") from None
    found = getattr(module, attr, None)
    if found is None:
        raise LookupError("the module has no class of that name")
    if not (isinstance(found, type) and issubclass(found, Strategy)):
        raise LookupError("that is not a Strategy subclass (see engine.strategy.Strategy)")
    return found


def _describe(exc: BaseException) -> str:
    """``Type: message (file:line)`` of where it was raised: enough to fix it, on one line."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{text} ({exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        text += f" ({frames[-1].filename}:{frames[-1].lineno})"
    return " ".join(text.split())
