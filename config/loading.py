"""Building ``Settings`` from the environment and ``.env``, and turning validation errors into
messages that name settings by their environment variable and never show a value."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic_settings
from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings

from config.settings import (
    AlpacaSettings,
    ChannelSettings,
    DiscordSettings,
    EngineSettings,
    LogSettings,
    RiskSettings,
    ScheduleSettings,
    SettingsError,
    SimSettings,
    StorageSettings,
    TradingMode,
    WebSettings,
    _section_config,
)
from config.strategies import COLLECTED_PREFIX, StrategySettings


class _TradingEnv(BaseSettings):
    model_config = _section_config("TRADING_")

    mode: TradingMode | None = None
    allow_live: bool = False

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


_KEY_ID = "APCA_API_KEY_ID or ALPACA_API_KEY"
_SECRET = "APCA_API_SECRET_KEY or ALPACA_SECRET_KEY"


def env_var_names(section: type[BaseSettings], field: str) -> tuple[str, ...]:
    """The environment variable names that set ``field``, the preferred name first."""
    alias = section.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice).upper() for choice in alias.choices)
    return (f"{section.model_config.get('env_prefix', '')}{field}".upper(),)


def _mode_problems(mode: TradingMode, allow_live: bool, alpaca: AlpacaSettings) -> list[str]:
    problems = []
    if mode != "sim" and alpaca.api_key is None:
        problems.append(f"{_KEY_ID}: the Alpaca API key id is required for {mode} trading")
    if mode != "sim" and alpaca.secret_key is None:
        problems.append(f"{_SECRET}: the Alpaca secret key is required for {mode} trading")
    if mode == "live" and not allow_live:
        problems.append(
            "TRADING_ALLOW_LIVE: must be true for TRADING_MODE=live; it is the second opt-in "
            "that lets orders go to the live Alpaca account with real money"
        )
    return problems


class Settings(BaseModel):
    """Every section plus the trading mode, validated together. Build it with
    ``load_settings``."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    mode: TradingMode
    allow_live: bool = False
    discord: DiscordSettings
    channels: ChannelSettings
    alpaca: AlpacaSettings
    risk: RiskSettings
    strategy: StrategySettings
    schedule: ScheduleSettings
    storage: StorageSettings
    sim: SimSettings
    engine: EngineSettings
    log: LogSettings
    web: WebSettings

    @model_validator(mode="after")
    def _mode_allowed(self) -> Settings:
        problems = _mode_problems(self.mode, self.allow_live, self.alpaca)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def allowed_symbols(self) -> list[str]:
        """``RISK_ALLOWED_SYMBOLS``, or every strategy's symbols when that is empty."""
        return list(self.risk.allowed_symbols or self.strategy.traded_symbols)

    def startup_notices(self) -> list[str]:
        """Lines to log at startup saying where orders go."""
        url = self.alpaca.trading_url
        host = urlsplit(url).hostname if url else None
        override = [f"ALPACA_TRADING_URL overrides the broker address: {host}"] if host else []
        if self.mode == "live":
            return [
                f"LIVE TRADING: orders use real money at {host or 'api.alpaca.markets'} "
                "(TRADING_MODE=live, TRADING_ALLOW_LIVE=true). Every order is a real trade; "
                "halt from Discord or the console to stop trading.",
                *override,
            ]
        if self.mode == "paper":
            where = host or "paper-api.alpaca.markets"
            return [f"Paper trading at {where}: Alpaca's paper account, no real money.", *override]
        return ["Simulator: orders fill in the built-in simulator; no broker, no real money."]

    def redacted_summary(self) -> dict[str, str]:
        """Every setting as environment variable name -> printable value; secrets appear
        only as ``set`` / ``not set``."""
        summary = {"TRADING_MODE": self.mode, "TRADING_ALLOW_LIVE": _show(self.allow_live)}
        for name, section_cls in _SECTIONS.items():
            section = getattr(self, name)
            for field, info in section_cls.model_fields.items():
                if not info.exclude:  # excluded: collected from variables named below
                    summary[env_var_names(section_cls, field)[0]] = _show(getattr(section, field))
        summary |= {k: _show(v) for k, v in self.strategy.collected_variables().items()}
        return summary


# Section name -> class, in Settings' field order.
_SECTIONS: dict[str, type[BaseSettings]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings)
}


def _show(value: object) -> str:
    if isinstance(value, SecretStr):
        return "set" if value.get_secret_value() else "not set"
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "not set"
    if isinstance(value, time):
        return value.isoformat(timespec="minutes" if not value.second else "seconds")
    return str(value)


_NamesSet = tuple[set[str], set[str]]


def _names_set(env_file: str | Path | None) -> _NamesSet:
    """The variable names set (never values) in the environment and in the file, so an error
    about an aliased field can name the alias whose value was used."""
    in_file: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        in_file = dotenv_values(env_file, encoding="utf-8")
    return {k.upper() for k, v in os.environ.items() if v}, {
        k.upper() for k, v in in_file.items() if v
    }


def _pick(candidates: tuple[str, ...], names_set: _NamesSet) -> str:
    # Same precedence as pydantic-settings: environment over file, then alias order.
    used = [name for source in names_set for name in candidates if name in source]
    return used[0] if used else " or ".join(candidates)


_HHMM = " (use HH:MM, for example 15:55)"
_HINTS = {"bool_parsing": " (use true or false)", "time_parsing": _HHMM, "time_type": _HHMM}


def _describe(section: type[BaseSettings], exc: ValidationError, names: _NamesSet) -> list[str]:
    by_setting: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        message = _scrub(message, error.get("input")) + _HINTS.get(error["type"], "")
        loc = error["loc"]
        if loc:
            field = _field_named(section, str(loc[0]))
            setting = _pick(env_var_names(section, field), names) if field else str(loc[0])
            if len(loc) > 1 and isinstance(loc[1], int):
                message = f"item {loc[1] + 1} of the comma-separated list: {message}"
        else:
            fields = getattr(error.get("ctx", {}).get("error"), "fields", ())
            prefix = section.model_config.get("env_prefix", "")
            setting = ", ".join(env_var_names(section, f)[0] for f in fields) or f"{prefix}*"
        by_setting.setdefault(setting, []).append(message)
    return [f"{setting}: {'; '.join(dict.fromkeys(m))}" for setting, m in by_setting.items()]


def _field_named(section: type[BaseSettings], key: str) -> str | None:
    if key in section.model_fields:
        return key
    for field in section.model_fields:
        if key.upper() in env_var_names(section, field):
            return field
    return None


def _scrub(message: str, given: object) -> str:
    # Pydantic's messages do not quote input today; this keeps it so if one ever does.
    leaves = given.values() if isinstance(given, Mapping) else [given]
    for leaf in leaves:
        if isinstance(leaf, str) and len(leaf.strip()) >= 4 and leaf in message:
            message = message.replace(leaf, "<value hidden>")
    return message


def setting_names() -> frozenset[str]:
    """Every environment variable name that sets something, aliases included."""
    sections: list[type[BaseSettings]] = [_TradingEnv, *_SECTIONS.values()]
    return frozenset(
        name
        for cls in sections
        for field, info in cls.model_fields.items()
        if not info.exclude  # collected from variables of their own: strategy parameters
        for name in env_var_names(cls, field)
    )


def setting_prefixes() -> tuple[str, ...]:
    """The prefixes that mark a name as meant for us: each section's, and the aliases' own
    (``APCA_``)."""
    sections: list[type[BaseSettings]] = [_TradingEnv, *_SECTIONS.values()]
    prefixes = {str(cls.model_config.get("env_prefix", "")).upper() for cls in sections}
    prefixes |= {name.split("_", 1)[0] + "_" if "_" in name else name for name in setting_names()}
    return tuple(sorted(p for p in prefixes if p))


def unknown_setting_names(env_file: str | Path | None = ".env") -> list[str]:
    """One warning per name in the environment or ``env_file`` that carries one of our
    prefixes but sets nothing (pydantic-settings ignores it silently), with the closest real
    name. Names only: values are never read into the message."""
    known = setting_names()
    prefixes = setting_prefixes()
    in_file: set[str] = set()
    if env_file is not None and Path(env_file).is_file():
        in_file = {k.upper() for k in dotenv_values(env_file, encoding="utf-8")}
    in_env = {k.upper() for k in os.environ}
    warnings = []
    for name in sorted(in_env | in_file):
        if name in known or name.startswith(COLLECTED_PREFIX) or not name.startswith(prefixes):
            continue  # COLLECTED_PREFIX: strategy parameters, checked by the strategy loader
        where = "the environment" if name in in_env else str(env_file)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}?" if close else "see config/example.env for every name"
        warnings.append(f"{name} (in {where}) is not a setting and is ignored: {hint}")
    return warnings


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build and validate every setting from the environment, then ``env_file`` (missing is
    fine; ``None`` reads no file). ``overrides`` set fields directly and win over both:
    ``storage={"data_dir": path}`` (a dict or a ready section instance), ``mode="paper"``,
    ``allow_live=True``. Raises ``SettingsError`` naming every bad setting."""
    unknown = set(overrides) - set(_SECTIONS) - {"mode", "allow_live"}
    if unknown:
        raise TypeError(f"load_settings() got unknown overrides: {', '.join(sorted(unknown))}")
    names = _names_set(env_file)
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for key, section_cls in _SECTIONS.items():
        given = overrides.get(key, {})
        if isinstance(given, section_cls):
            sections[key] = given
            continue
        if extra := set(given) - set(section_cls.model_fields):
            raise TypeError(f"load_settings({key}=...) got unknown fields: {sorted(extra)}")
        try:
            sections[key] = section_cls(_env_file=env_file, **dict(given))
        except ValidationError as exc:
            problems += _describe(section_cls, exc, names)
        except pydantic_settings.SettingsError:
            prefix = section_cls.model_config.get("env_prefix", "")
            problems.append(f"{prefix}*: a value in this section could not be parsed")
    trading_init: dict[str, Any] = {"_env_file": env_file}
    trading_init |= {k: overrides[k] for k in ("mode", "allow_live") if k in overrides}
    trading: _TradingEnv | None = None
    try:
        trading = _TradingEnv(**trading_init)
    except ValidationError as exc:
        problems += _describe(_TradingEnv, exc, names)
    alpaca = sections.get("alpaca")
    mode: TradingMode = "sim"
    if trading is not None and isinstance(alpaca, AlpacaSettings):
        has_any_key = alpaca.api_key is not None or alpaca.secret_key is not None
        mode = trading.mode or ("paper" if has_any_key else "sim")
        problems += _mode_problems(mode, trading.allow_live, alpaca)
    # Raised outside any except block: the ValidationError (which holds the input) must not
    # be chained into the traceback.
    if problems or trading is None:
        raise SettingsError(problems)
    return Settings(mode=mode, allow_live=trading.allow_live, **sections)
