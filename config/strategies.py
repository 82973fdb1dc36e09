"""Strategy settings: one strategy from ``STRATEGY_*``, or several named in ``STRATEGIES``,
each with its own symbols, order size and parameters (docs/configuration.md,
docs/strategies.md). Only the shape is checked here; ``engine.strategy.loader`` imports each
class and validates its parameters against the class's own model."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from config.settings import NameList, SymbolList, _section_config

_STRATEGY_USE = re.compile(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?")
_SLOT_FIELDS = ("class", "symbols", "order_qty", "long_only")
_STRATEGY_PREFIX = "strategy_"
COLLECTED_PREFIX = "STRATEGY_"
"""Every ``STRATEGY_*`` name no field declares is a strategy parameter or a setting of a
strategy listed in ``STRATEGIES``: never an unknown name (the loader refuses a wrong one)."""


@dataclass(frozen=True, slots=True)
class StrategySlot:
    """One configured strategy, before its class is imported (``engine.strategy.loader``
    imports it and validates ``params`` against the class's own model)."""

    name: str | None
    """What orders, P&L and alerts call it; None: the class's own name (a single strategy
    named by dotted path)."""
    use: str
    """A built-in short name (``golden_cross``) or ``package.module:Class``."""
    symbols: tuple[str, ...]
    order_qty: Decimal
    long_only: bool
    params: Mapping[str, object]
    prefix: str
    """Environment prefix of its settings (``STRATEGY_`` or ``STRATEGY_TREND__``), so an
    error names the variable: ``prefix + field.upper()``."""

    def setting(self, field: str) -> str:
        return f"{self.prefix}{field.upper()}"


class _SlotFields(BaseModel):
    """The fields every strategy has besides its own parameters."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True, extra="forbid")

    use: str = Field(pattern=_STRATEGY_USE.pattern)
    symbols: SymbolList = Field(min_length=1)
    order_qty: Decimal = Field(default=Decimal(10), gt=0)
    long_only: bool = True


class _StrategyVariables(PydanticBaseSettingsSource):
    """Collects the variables no field declares: ``STRATEGY_<PARAM>`` (the single strategy's
    parameters) and ``STRATEGY_<NAME>__<FIELD>`` (the strategies listed in ``STRATEGIES``).
    The environment beats the ``.env`` file, as for every other setting."""

    def __init__(self, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._sources = sources

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        declared = {f"{_STRATEGY_PREFIX}{name}" for name in self.settings_cls.model_fields}
        params: dict[str, object] = {}
        named: dict[str, dict[str, object]] = {}
        for source in reversed(self._sources):  # file first, so the environment wins
            for key, value in getattr(source, "env_vars", {}).items():
                key = key.lower()
                if not key.startswith(_STRATEGY_PREFIX) or key in declared or not value:
                    continue
                rest = key.removeprefix(_STRATEGY_PREFIX)
                if "__" in rest:
                    name, _, field = rest.partition("__")
                    named.setdefault(name, {})[field] = value
                else:
                    params[rest] = value
        return {"params": params, "named": named}


class StrategySettings(BaseSettings):
    """One strategy from ``STRATEGY_NAME``/``STRATEGY_SYMBOLS``/... (its parameters are the
    other ``STRATEGY_<PARAM>`` variables), or several: ``STRATEGIES=trend,revert`` with
    ``STRATEGY_TREND__CLASS``, ``STRATEGY_TREND__SYMBOLS``, ``STRATEGY_TREND__<PARAM>``...
    See docs/strategies.md."""

    model_config = _section_config("STRATEGY_")

    name: str = Field(default="golden_cross", pattern=_STRATEGY_USE.pattern)
    """A built-in short name or ``package.module:Class``."""
    symbols: SymbolList = Field(default_factory=lambda: ["AAPL", "MSFT", "SPY"])
    order_qty: Decimal = Field(default=Decimal(10), gt=0)
    long_only: bool = True
    params: dict[str, object] = Field(default_factory=dict, exclude=True)
    """The single strategy's parameters (``STRATEGY_FAST=10`` -> ``fast``); collected from
    the variables no field declares, so ``exclude``: not a variable of its own."""
    enabled: NameList = Field(
        default_factory=list, validation_alias=AliasChoices("STRATEGIES", "enabled")
    )
    """Names of several strategies to run; empty: the single one above."""
    named: dict[str, dict[str, object]] = Field(default_factory=dict, exclude=True)
    """``STRATEGY_<NAME>__<FIELD>`` values of the strategies in ``enabled`` (collected)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        collected = _StrategyVariables(settings_cls, env_settings, dotenv_settings)
        return init_settings, env_settings, dotenv_settings, collected, file_secret_settings

    @field_validator("symbols")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is required")
        return value

    @model_validator(mode="after")
    def _slots_valid(self) -> StrategySettings:
        slots = _build_slots(self)  # raises a ValidationError naming each bad variable
        # Each class imported and its parameters validated now, with every other setting:
        # a configuration error, not a failed start. Imported here: the loader imports us.
        from engine.strategy.loader import StrategyConfigError, load_strategies

        try:
            load_strategies(slots)
        except StrategyConfigError as exc:
            raise _errors(exc.problems) from None
        return self

    @property
    def slots(self) -> tuple[StrategySlot, ...]:
        """Every configured strategy, each with its own symbols (no symbol twice)."""
        return _build_slots(self)

    def collected_variables(self) -> dict[str, object]:
        """The collected variables (``params``, ``named``) by their environment names."""
        found = {f"STRATEGY_{key.upper()}": value for key, value in self.params.items()}
        for name, fields in self.named.items():
            prefix = f"STRATEGY_{name.upper()}__"
            found |= {f"{prefix}{key.upper()}": value for key, value in fields.items()}
        return found

    @property
    def traded_symbols(self) -> list[str]:
        """Every strategy's symbols, in the order configured."""
        return [symbol for slot in self.slots for symbol in slot.symbols]


def _build_slots(settings: StrategySettings) -> tuple[StrategySlot, ...]:
    problems: list[tuple[str, str]] = []

    def problem(setting: str, message: str) -> None:
        problems.append((setting, message))

    for name in sorted(set(settings.named) - set(settings.enabled)):
        problem(f"STRATEGY_{name.upper()}__*", f"strategy {name!r} is not listed in STRATEGIES")
    if not settings.enabled and not problems:
        single = StrategySlot(
            name=None if ":" in settings.name else settings.name,
            use=settings.name,
            symbols=tuple(settings.symbols),
            order_qty=settings.order_qty,
            long_only=settings.long_only,
            params=dict(settings.params),
            prefix="STRATEGY_",
        )
        return (single,)
    slots: list[StrategySlot] = []
    owner: dict[str, StrategySlot] = {}
    for name in settings.enabled:
        prefix = f"STRATEGY_{name.upper()}__"
        given = dict(settings.named.get(name, {}))
        fields = {k: given.pop(k) for k in _SLOT_FIELDS if k in given}
        if "class" not in fields:
            problem(f"{prefix}CLASS", "required: a built-in strategy name or package.module:Class")
            continue
        fields["use"] = fields.pop("class")
        try:
            base = _SlotFields.model_validate(fields)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                field = "class" if error["loc"][0] == "use" else str(error["loc"][0])
                problem(f"{prefix}{field.upper()}", error["msg"])
            continue
        slot = StrategySlot(
            name=name,
            use=base.use,
            symbols=tuple(base.symbols),
            order_qty=base.order_qty,
            long_only=base.long_only,
            params=given,
            prefix=prefix,
        )
        for symbol in slot.symbols:
            first = owner.setdefault(symbol, slot)
            if first is not slot:
                problem(
                    slot.setting("symbols"),
                    f"{symbol} is already traded by strategy {first.name} "
                    f"({first.setting('symbols')}); a symbol belongs to one strategy",
                )
        slots.append(slot)
    if problems:
        raise _errors(problems)
    return tuple(slots)


def _errors(problems: Iterable[tuple[str, str]]) -> ValidationError:
    """Problems as a ValidationError located at each setting's variable name, which is how
    ``config.loading`` names a setting in its one-line-per-setting message."""
    errors = [
        InitErrorDetails(
            type=PydanticCustomError("strategy_setting", "{message}", {"message": message}),
            loc=(setting,),
            input=None,
        )
        for setting, message in problems
    ]
    return ValidationError.from_exception_data("StrategySettings", errors)
