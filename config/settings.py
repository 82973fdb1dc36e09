"""Typed settings, one section per component. Read once at startup; each component receives
only its own section.

Environment variable names are ``<PREFIX><FIELD>`` in upper case (``RISK_MAX_POSITION_QTY``),
plus the names traders already have: ``DISCORD_TOKEN``, ``APCA_API_KEY_ID``,
``APCA_API_SECRET_KEY``, ``ALPACA_API_KEY``, ``ALPACA_SECRET_KEY``. The process environment
beats the ``.env`` file; an empty value means "use the default". ``load_settings`` (in
``config.loading``) builds everything and raises ``SettingsError``, whose message names
settings but never their values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TradingMode = Literal["sim", "paper", "live"]


class SettingsError(Exception):
    """Invalid settings: one line per bad setting, named by its environment variable, saying
    what is allowed. Never contains a value."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"Invalid settings (values are never shown):\n{lines}")


class _CrossFieldError(ValueError):
    """A model-level check; carries its field names so the error can name the settings."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields


def _split_csv(value: object) -> object:
    """Accept ``"1,2,3"`` (what people type in a .env) as well as real lists."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_SYMBOL = re.compile(r"[A-Z][A-Z0-9.\-/]{0,15}")


def _symbols(value: list[str]) -> list[str]:
    upper = [s.upper() for s in value]
    if not all(_SYMBOL.fullmatch(s) for s in upper):
        raise ValueError("symbols are letters, digits, '.', '-' or '/', separated by commas")
    return list(dict.fromkeys(upper))


_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _names(value: list[str]) -> list[str]:
    lower = [s.lower() for s in value]
    if not all(_NAME.fullmatch(s) and "__" not in s for s in lower):
        raise ValueError(
            "names are a letter then letters, digits or single '_' (at most 32), "
            "separated by commas"
        )
    if len(set(lower)) != len(lower):
        raise ValueError("each name may appear once")
    return lower


# NoDecode: a list comes from "1,2,3", not JSON.
IdList = Annotated[list[PositiveInt], NoDecode, BeforeValidator(_split_csv)]
SymbolList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv), AfterValidator(_symbols)]
NameList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv), AfterValidator(_names)]


def _section_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        validate_by_name=True,
        validate_default=True,
    )


class DiscordSettings(BaseSettings):
    model_config = _section_config("DISCORD_")

    token: SecretStr | None = None
    command_prefix: str = "!"
    guild_id: int | None = Field(default=None, gt=0)
    command_channel_ids: IdList = Field(default_factory=list)
    control_user_ids: IdList = Field(default_factory=list)
    control_role_ids: IdList = Field(default_factory=list)
    read_user_ids: IdList = Field(default_factory=list)
    read_role_ids: IdList = Field(default_factory=list)
    confirm_timeout_s: float = Field(default=30.0, gt=0)
    dedupe_window_s: float = Field(default=5.0, ge=0)


class ChannelSettings(BaseSettings):
    model_config = _section_config("CHANNEL_")

    heartbeat_id: int | None = Field(default=None, gt=0)
    system_alerts_id: int | None = Field(default=None, gt=0)
    trades_id: int | None = Field(default=None, gt=0)
    reports_id: int | None = Field(default=None, gt=0)
    critical_mention_role_id: int | None = Field(default=None, gt=0)
    critical_mention_user_id: int | None = Field(default=None, gt=0)


class AlpacaSettings(BaseSettings):
    model_config = _section_config("ALPACA_")

    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("APCA_API_KEY_ID", "ALPACA_API_KEY")
    )
    secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("APCA_API_SECRET_KEY", "ALPACA_SECRET_KEY")
    )
    trading_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ALPACA_TRADING_URL", "APCA_API_BASE_URL")
    )
    """Override for the REST base URL (paper and live defaults come from the mode)."""
    trade_stream_url: str | None = None
    """Override for the trade-updates WebSocket; derived from the trading URL when unset."""
    data_url: str | None = None
    """Override for the historical market-data REST base URL."""
    data_stream_url: str | None = None
    """Override for the market-data WebSocket; default from ``data_feed``."""
    data_feed: Literal["iex", "sip"] = "iex"
    request_timeout_s: float = Field(default=10.0, gt=0)
    max_requests_per_minute: int = Field(default=190, gt=0, le=200)
    breaker_failures: int = Field(default=5, gt=0)
    breaker_reset_s: float = Field(default=15.0, gt=0)
    outage_halt_s: float = Field(default=60.0, gt=0)

    @field_validator("trading_url", "data_url", "trade_stream_url", "data_stream_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        schemes = (
            ("ws", "wss") if str(info.field_name).endswith("stream_url") else ("http", "https")
        )
        if value is not None and urlsplit(value).scheme not in schemes:
            raise ValueError(f"must be a {schemes[0]}:// or {schemes[1]}:// URL")
        return value

    @model_validator(mode="after")
    def _timeout_below_outage(self) -> AlpacaSettings:
        # One request hanging until its timeout would otherwise count as an outage long
        # enough to halt trading before it had even failed.
        if self.request_timeout_s >= self.outage_halt_s:
            raise _CrossFieldError(
                "the request timeout must be shorter than the outage halt "
                "(one slow request would halt trading)",
                "request_timeout_s",
                "outage_halt_s",
            )
        return self


class RiskSettings(BaseSettings):
    model_config = _section_config("RISK_")

    allowed_symbols: SymbolList = Field(default_factory=list)
    """Symbols the engine may trade; empty means the strategy's symbols."""
    max_position_qty: Decimal = Field(default=Decimal(1000), gt=0)
    max_position_notional: Decimal = Field(default=Decimal(50_000), gt=0)
    max_gross_exposure: Decimal = Field(default=Decimal(200_000), gt=0)
    max_order_notional: Decimal = Field(default=Decimal(25_000), gt=0)
    max_price_deviation_pct: Decimal = Field(default=Decimal(5), gt=0)
    daily_loss_limit: Decimal = Field(default=Decimal(2_000), gt=0)
    max_orders_per_day: int = Field(default=200, gt=0)
    pdt_guard: bool = True
    require_market_open: bool = True


class ScheduleSettings(BaseSettings):
    model_config = _section_config("SCHEDULE_")

    timezone: str = "America/New_York"
    heartbeat_minutes: float = Field(default=5.0, gt=0)
    reconcile_minutes: float = Field(default=15.0, gt=0)
    preclose_flatten_time: time | None = None
    """Exchange-local time to flatten before the close (for example ``15:55``); unset = off."""
    eod_report_delay_minutes: int = Field(default=5, ge=0)
    stale_data_seconds: float = Field(default=120.0, gt=0)
    engine_stale_seconds: float = Field(default=60.0, gt=0)
    misfire_grace_seconds: int = Field(default=300, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as America/New_York") from None
        return value


class StorageSettings(BaseSettings):
    model_config = _section_config("STORAGE_")

    data_dir: Path = Path("data")
    db_name: str = "trader.sqlite"
    write_behind_ms: int = Field(default=200, gt=0)
    equity_snapshot_seconds: float = Field(default=60.0, gt=0)

    @property
    def db_path(self) -> Path:
        return self.data_dir / self.db_name


class SimSettings(BaseSettings):
    model_config = _section_config("SIM_")

    starting_cash: Decimal = Field(default=Decimal(100_000), gt=0)
    slippage_bps: Decimal = Field(default=Decimal(2), ge=0)
    commission_per_share: Decimal = Field(default=Decimal("0.005"), ge=0)
    commission_min: Decimal = Field(default=Decimal(1), ge=0)
    max_fill_qty: Decimal = Field(default=Decimal(0), ge=0)
    """Largest quantity one execution fills; 0 fills each order in one execution."""
    latency_ms: float = Field(default=0.0, ge=0)
    replay_speed: str = "60"
    """``max`` (as fast as possible), ``realtime``, or a multiplier such as ``60``."""
    replay_csv: Path | None = None
    """A CSV of minute bars to replay instead of the bundled sample."""
    replay_start: date | None = None
    """With ``replay_end``: replay these New York dates from the history cache in the data
    dir (``run_bot.py fetch-bars``) instead of a CSV; the last is replayed, the days before
    it are history."""
    replay_end: date | None = None

    @field_validator("replay_speed")
    @classmethod
    def _speed(cls, value: str) -> str:
        text = value.strip().lower()
        try:
            valid = text in ("max", "realtime") or 0 < float(text) < float("inf")
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("must be 'max', 'realtime' or a positive number")
        return text

    @model_validator(mode="after")
    def _replay_days(self) -> SimSettings:
        days = (self.replay_start, self.replay_end)
        if (days[0] is None) != (days[1] is None):
            raise _CrossFieldError(
                "set both or neither (New York dates, YYYY-MM-DD)",
                "replay_start",
                "replay_end",
            )
        if days[0] is not None and days[1] is not None and days[0] > days[1]:
            raise _CrossFieldError("must not be after SIM_REPLAY_END", "replay_start")
        if days[0] is not None and self.replay_csv is not None:
            raise _CrossFieldError(
                "a replay reads either a CSV or days of the history cache, not both",
                "replay_csv",
                "replay_start",
            )
        return self

    @property
    def replay_multiplier(self) -> float:
        """0 means as fast as possible."""
        if self.replay_speed == "max":
            return 0.0
        if self.replay_speed == "realtime":
            return 1.0
        return float(self.replay_speed)


class EngineSettings(BaseSettings):
    model_config = _section_config("ENGINE_")

    flatten_deadline_s: float = Field(default=25.0, gt=0)
    loop_lag_interval_s: float = Field(default=0.25, gt=0)
    health_interval_s: float = Field(default=15.0, gt=0)
    """How often the engine writes its liveness file (``health.json`` in the data dir)."""
    health_stale_s: float = Field(default=90.0, gt=0)
    """``run_bot.py healthcheck`` fails when the liveness file is older than this."""
    flatten_on_shutdown: bool = False
    """Flatten the book on a graceful stop (SIGTERM/SIGINT) before exiting."""
    shutdown_grace_s: float = Field(default=5.0, gt=0)
    """How long a graceful stop lets in-flight broker calls finish before cancelling them."""


class LogSettings(BaseSettings):
    model_config = _section_config("LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "text"] = "auto"
    """``auto``: readable text in console mode, JSON lines otherwise."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


MIN_WEB_TOKEN_CHARS = 16


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): reachable from this machine
    only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class WebSettings(BaseSettings):
    """The read-only web page, JSON API and ``/metrics`` (docs/web.md)."""

    model_config = _section_config("WEB_")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    """0 picks a free port (tests)."""
    token: SecretStr | None = None
    """Bearer token for every route but ``/healthz``. Required off loopback; on loopback,
    unset means a random token per run, written to ``web-token`` in the data dir."""

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() or c in "/@?#" for c in value.strip()):
            raise ValueError("must be an IP address or a host name, for example 127.0.0.1")
        return value.strip()

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_WEB_TOKEN_CHARS:
            raise ValueError(
                f"must be at least {MIN_WEB_TOKEN_CHARS} characters; make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSettings:
        if self.enabled and self.token is None and not is_loopback_host(self.host):
            raise _CrossFieldError(
                "WEB_TOKEN is required when WEB_HOST is not a loopback address "
                "(127.0.0.1, ::1, localhost): set a long random token, or keep 127.0.0.1 "
                "and reach the page through an SSH tunnel",
                "host",
                "token",
            )
        return self
