"""Settings: sources and precedence, trading mode, errors that name settings but never values,
the example file, and the redacted summary."""

from __future__ import annotations

import os
import traceback
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import (
    AlpacaSettings,
    RiskSettings,
    Settings,
    SettingsError,
    env_var_names,
    load_settings,
)
from config.loading import _SECTIONS

EXAMPLE_ENV = Path(__file__).resolve().parents[2] / "config" / "example.env"
PREFIXES = tuple(
    {str(cls.model_config.get("env_prefix", "")) for cls in _SECTIONS.values()}
    | {"APCA_", "TRADING_"}
)
TOKEN = "MTIzNDU2Nzg5.discord-token-SECRET"
KEY_ID = "PKSECRETKEYID0123"
SECRET_KEY = "secret-key-SECRET-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith(PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_env(path: Path, **values: str) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def load_error(env_file: str | Path | None = None, **overrides: object) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file, **overrides)
    return caught.value


def line_for(error: SettingsError, name: str) -> str:
    lines = [line for line in error.problems if line.startswith(f"{name}:")]
    assert len(lines) == 1, error.problems
    return lines[0]


def set_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET_KEY)


def test_load_when_nothing_is_set_then_defaults() -> None:
    settings = load_settings(None)

    assert settings.mode == "sim"
    assert settings.allow_live is False
    assert settings.discord.token is None
    assert settings.alpaca.api_key is None
    assert settings.risk.max_position_qty == Decimal(1000)
    assert settings.sim.commission_per_share == Decimal("0.005")
    assert settings.strategy.symbols == ["AAPL", "MSFT", "SPY"]
    assert settings.risk.allowed_symbols == []
    assert settings.allowed_symbols == ["AAPL", "MSFT", "SPY"]
    assert settings.schedule.preclose_flatten_time is None
    assert settings.storage.db_path == Path("data") / "trader.sqlite"
    assert settings.log.level == "INFO"


def test_load_when_dotenv_in_working_directory_then_its_values_are_used(tmp_path: Path) -> None:
    write_env(
        tmp_path / ".env",
        RISK_MAX_POSITION_QTY="5.5",
        DISCORD_CONTROL_USER_IDS="123, 456",
        STRATEGY_SYMBOLS="spy,qqq",
        RISK_ALLOWED_SYMBOLS="spy",
        SCHEDULE_PRECLOSE_FLATTEN_TIME="15:55",
        SIM_REPLAY_SPEED="MAX",
    )

    settings = load_settings()

    assert settings.risk.max_position_qty == Decimal("5.5")
    assert settings.discord.control_user_ids == [123, 456]
    assert settings.strategy.symbols == ["SPY", "QQQ"]
    assert settings.allowed_symbols == ["SPY"]
    assert settings.schedule.preclose_flatten_time is not None
    assert settings.schedule.preclose_flatten_time.isoformat() == "15:55:00"
    assert settings.sim.replay_multiplier == 0.0


def test_load_when_env_file_is_missing_then_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "nope.env")

    assert settings.risk.max_position_qty == Decimal(1000)


def test_load_when_environment_and_file_disagree_then_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = write_env(tmp_path / "a.env", RISK_MAX_ORDERS_PER_DAY="7", LOG_LEVEL="DEBUG")
    monkeypatch.setenv("RISK_MAX_ORDERS_PER_DAY", "9")

    settings = load_settings(env_file)

    assert settings.risk.max_orders_per_day == 9
    assert settings.log.level == "DEBUG"


def test_load_when_value_is_empty_then_default_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_MAX_POSITION_QTY", "")
    monkeypatch.setenv("APCA_API_KEY_ID", "")

    settings = load_settings(None)

    assert settings.risk.max_position_qty == Decimal(1000)
    assert settings.alpaca.api_key is None
    assert settings.mode == "sim"


@pytest.mark.parametrize(
    ("key_name", "secret_name"),
    [("APCA_API_KEY_ID", "APCA_API_SECRET_KEY"), ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")],
)
def test_load_when_keys_set_under_either_name_then_paper_mode_with_those_keys(
    monkeypatch: pytest.MonkeyPatch, key_name: str, secret_name: str
) -> None:
    monkeypatch.setenv(key_name, KEY_ID)
    monkeypatch.setenv(secret_name, SECRET_KEY)

    settings = load_settings(None)

    assert settings.mode == "paper"
    assert settings.alpaca.api_key is not None
    assert settings.alpaca.api_key.get_secret_value() == KEY_ID
    assert settings.alpaca.secret_key is not None
    assert settings.alpaca.secret_key.get_secret_value() == SECRET_KEY
    assert settings.startup_notices() == [
        "Paper trading at paper-api.alpaca.markets: Alpaca's paper account, no real money."
    ]


def test_load_when_no_keys_and_no_mode_then_sim_with_simulator_notice() -> None:
    settings = load_settings(None)

    assert settings.mode == "sim"
    assert len(settings.startup_notices()) == 1
    assert "simulator" in settings.startup_notices()[0].lower()


def test_load_when_mode_is_upper_case_then_it_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    set_keys(monkeypatch)
    monkeypatch.setenv("TRADING_MODE", "SIM")

    assert load_settings(None).mode == "sim"


def test_load_when_live_without_allow_live_then_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_keys(monkeypatch)
    monkeypatch.setenv("TRADING_MODE", "live")

    error = load_error()

    line = line_for(error, "TRADING_ALLOW_LIVE")
    assert "must be true" in line
    assert "real money" in line
    assert len(error.problems) == 1


def test_load_when_live_with_allow_live_then_live_with_loud_notice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_keys(monkeypatch)
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("TRADING_ALLOW_LIVE", "true")

    settings = load_settings(None)

    assert settings.mode == "live"
    assert settings.allow_live is True
    notice = settings.startup_notices()[0]
    assert notice.startswith("LIVE TRADING: orders use real money at api.alpaca.markets")


def test_notices_when_trading_url_overridden_then_host_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_keys(monkeypatch)
    monkeypatch.setenv("APCA_API_BASE_URL", "http://127.0.0.1:8123/v2")

    notices = load_settings(None).startup_notices()

    assert notices[0].startswith("Paper trading at 127.0.0.1:")
    assert notices[1] == "ALPACA_TRADING_URL overrides the broker address: 127.0.0.1"


def test_load_when_paper_without_keys_then_both_key_names_are_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADING_MODE", "paper")

    error = load_error()

    assert line_for(error, "APCA_API_KEY_ID or ALPACA_API_KEY")
    assert line_for(error, "APCA_API_SECRET_KEY or ALPACA_SECRET_KEY")
    assert len(error.problems) == 2


def test_load_when_only_key_id_set_then_paper_is_assumed_and_secret_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", KEY_ID)

    error = load_error()

    assert error.problems == (
        "APCA_API_SECRET_KEY or ALPACA_SECRET_KEY: the Alpaca secret key is required for "
        "paper trading",
    )


@pytest.mark.parametrize(
    ("name", "bad", "allowed"),
    [
        ("RISK_MAX_POSITION_QTY", "-5", "Input should be greater than 0"),
        ("RISK_DAILY_LOSS_LIMIT", "lots", "Input should be a valid decimal"),
        ("ALPACA_MAX_REQUESTS_PER_MINUTE", "500", "less than or equal to 200"),
        ("STRATEGY_FAST", "twelve", "Input should be a valid integer"),
        ("STRATEGY_ORDER_QTY", "twelve", "Input should be a valid decimal"),
        ("RISK_PDT_GUARD", "maybe", "(use true or false)"),
        ("LOG_FORMAT", "xml", "'auto', 'json' or 'text'"),
        ("ALPACA_DATA_FEED", "sipp", "'iex' or 'sip'"),
        ("TRADING_MODE", "yolo", "'sim', 'paper' or 'live'"),
        ("DISCORD_CONTROL_USER_IDS", "123,abc", "item 2 of the comma-separated list"),
        ("DISCORD_CONTROL_ROLE_IDS", "-4", "Input should be greater than 0"),
        ("CHANNEL_TRADES_ID", "general", "Input should be a valid integer"),
        ("SCHEDULE_PRECLOSE_FLATTEN_TIME", "25:99", "(use HH:MM, for example 15:55)"),
        ("SCHEDULE_TIMEZONE", "Mars/Olympus", "IANA time zone"),
        ("SIM_REPLAY_SPEED", "warp", "'max', 'realtime' or a positive number"),
        ("SIM_REPLAY_SPEED", "-3", "'max', 'realtime' or a positive number"),
        ("STRATEGY_SYMBOLS", "AAPL MSFT", "separated by commas"),
        ("ALPACA_DATA_STREAM_URL", "https://example.test", "ws:// or wss:// URL"),
    ],
)
def test_load_when_value_is_invalid_then_error_names_variable_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, name: str, bad: str, allowed: str
) -> None:
    monkeypatch.setenv(name, bad)

    error = load_error()

    assert allowed in line_for(error, name)
    assert len(error.problems) == 1
    assert bad not in str(error)


def test_load_when_several_values_are_invalid_then_every_one_is_listed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = write_env(tmp_path / "x.env", SIM_LATENCY_MS="-1", ENGINE_SHUTDOWN_GRACE_S="0")
    monkeypatch.setenv("LOG_LEVEL", "loud")

    error = load_error(env_file)

    assert [line.split(":")[0] for line in error.problems] == [
        "SIM_LATENCY_MS",
        "ENGINE_SHUTDOWN_GRACE_S",
        "LOG_LEVEL",
    ]
    assert str(error).splitlines()[0] == "Invalid settings (values are never shown):"


def test_load_when_fast_not_below_slow_then_both_settings_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATEGY_FAST", "30")
    monkeypatch.setenv("STRATEGY_SLOW", "30")

    error = load_error()

    assert error.problems == (
        "STRATEGY_FAST, STRATEGY_SLOW: the fast length must be smaller than the slow one",
    )


def test_load_when_bad_value_beside_secrets_then_no_secret_or_value_in_error_or_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pasted = "PASTED-wrong-field-0xdeadbeef"
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    set_keys(monkeypatch)
    monkeypatch.setenv("RISK_MAX_POSITION_QTY", pasted)
    monkeypatch.setenv("RISK_MAX_ORDERS_PER_DAY", TOKEN)  # a secret pasted into the wrong place
    env_file = write_env(tmp_path / "s.env", STRATEGY_ORDER_QTY=SECRET_KEY)

    error = load_error(env_file)

    shown = str(error) + "".join(traceback.format_exception(error))
    assert "RISK_MAX_POSITION_QTY" in shown
    assert "RISK_MAX_ORDERS_PER_DAY" in shown
    assert "STRATEGY_ORDER_QTY" in shown
    for value in (pasted, TOKEN, KEY_ID, SECRET_KEY, "deadbeef", "SECRET"):
        assert value not in shown
    assert error.__cause__ is None
    assert error.__context__ is None


def test_load_when_aliased_field_is_invalid_then_error_names_the_alias_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APCA_API_BASE_URL", "ftp://broker.example")

    error = load_error()

    assert "http:// or https:// URL" in line_for(error, "APCA_API_BASE_URL")
    assert "ALPACA_TRADING_URL" not in str(error)


def test_load_when_alias_in_environment_and_other_alias_in_file_then_environment_one_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = write_env(tmp_path / "u.env", ALPACA_TRADING_URL="http://fine.example")
    monkeypatch.setenv("APCA_API_BASE_URL", "ftp://broker.example")

    error = load_error(env_file)

    assert line_for(error, "APCA_API_BASE_URL")
    assert "ALPACA_TRADING_URL" not in str(error)


def test_load_when_aliased_override_is_invalid_then_error_lists_both_names() -> None:
    error = load_error(alpaca={"trading_url": "ftp://broker.example"})

    assert line_for(error, "ALPACA_TRADING_URL or APCA_API_BASE_URL")


def test_example_env_when_parsed_then_it_lists_every_setting_and_secrets_are_empty() -> None:
    text = EXAMPLE_ENV.read_text(encoding="utf-8")
    entries = dict(
        line.split("=", 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    defaults = load_settings(None).redacted_summary()

    expected = {"TRADING_MODE", "TRADING_ALLOW_LIVE"}
    for cls in _SECTIONS.values():
        for field, info in cls.model_fields.items():
            if info.exclude:
                continue  # collected from variables of their own (strategy parameters)
            names = env_var_names(cls, field)
            assert any(name in entries for name in names), names
            expected.add(names[0])
    assert set(entries) == expected
    for name in ("DISCORD_TOKEN", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADING_MODE"):
        assert entries[name] == ""
    for name, value in defaults.items():
        if value not in ("not set", "sim"):
            assert entries[name] != "", f"{name} should show its default"
    for alternative in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "APCA_API_BASE_URL"):
        assert alternative in text


def test_example_env_when_loaded_alone_then_it_yields_the_defaults() -> None:
    assert load_settings(EXAMPLE_ENV) == load_settings(None)


def test_redacted_summary_when_secrets_set_then_shows_only_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("ALPACA_API_KEY", KEY_ID)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("RISK_ALLOWED_SYMBOLS", "spy,qqq")

    summary = load_settings(None).redacted_summary()

    assert summary["DISCORD_TOKEN"] == "set"
    assert summary["APCA_API_KEY_ID"] == "set"
    assert summary["APCA_API_SECRET_KEY"] == "set"
    assert summary["TRADING_MODE"] == "paper"
    assert summary["RISK_ALLOWED_SYMBOLS"] == "SPY,QQQ"
    assert summary["RISK_MAX_POSITION_QTY"] == "1000"
    assert summary["STRATEGY_LONG_ONLY"] == "true"
    field_count = sum(
        1 for cls in _SECTIONS.values() for info in cls.model_fields.values() if not info.exclude
    )
    assert len(summary) == field_count + 2
    for value in (TOKEN, KEY_ID, SECRET_KEY):
        assert value not in repr(summary)


def test_redacted_summary_when_nothing_set_then_secrets_show_not_set() -> None:
    summary = load_settings(None).redacted_summary()

    assert summary["DISCORD_TOKEN"] == "not set"
    assert summary["APCA_API_KEY_ID"] == "not set"
    assert summary["APCA_API_SECRET_KEY"] == "not set"


def test_load_when_overrides_given_then_they_beat_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STORAGE_DATA_DIR", "/elsewhere")
    monkeypatch.setenv("STORAGE_DB_NAME", "x.sqlite")

    settings = load_settings(None, storage={"data_dir": tmp_path}, log={"level": "debug"})

    assert settings.storage.db_path == tmp_path / "x.sqlite"
    assert settings.log.level == "DEBUG"


def test_load_when_mode_override_then_it_beats_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_keys(monkeypatch)

    assert load_settings(None, mode="sim").mode == "sim"
    assert load_settings(None, mode="live", allow_live=True).mode == "live"


def test_load_when_section_instance_override_then_used_as_is() -> None:
    risk = RiskSettings(_env_file=None, max_orders_per_day=3)
    keys = AlpacaSettings(_env_file=None, api_key=KEY_ID, secret_key=SECRET_KEY)

    settings = load_settings(None, risk=risk, alpaca=keys, mode="paper")

    assert settings.risk is risk
    assert settings.mode == "paper"


def test_load_when_override_is_invalid_then_error_names_variable() -> None:
    error = load_error(risk={"max_position_qty": Decimal(0)}, mode="paper")

    assert "greater than 0" in line_for(error, "RISK_MAX_POSITION_QTY")
    assert line_for(error, "APCA_API_KEY_ID or ALPACA_API_KEY")


def test_load_when_override_name_unknown_then_type_error() -> None:
    with pytest.raises(TypeError, match="risks"):
        load_settings(None, risks={})


def test_load_when_override_field_unknown_then_type_error() -> None:
    with pytest.raises(TypeError, match="data_dirr"):
        load_settings(None, storage={"data_dirr": "/tmp"})


def test_settings_when_assigned_then_refused_because_frozen() -> None:
    settings = load_settings(None)

    with pytest.raises(ValidationError):
        settings.mode = "live"
    with pytest.raises(ValidationError):
        settings.storage.data_dir = Path("/tmp")


def test_settings_when_built_directly_for_live_without_opt_in_then_refused() -> None:
    sections = {name: cls(_env_file=None) for name, cls in _SECTIONS.items()}
    sections["alpaca"] = AlpacaSettings(_env_file=None, api_key=KEY_ID, secret_key=SECRET_KEY)

    with pytest.raises(ValidationError, match="TRADING_ALLOW_LIVE") as caught:
        Settings(mode="live", **sections)
    assert KEY_ID not in str(caught.value)


@pytest.mark.parametrize("timeout", ["60", "90"])
def test_load_when_request_timeout_not_below_outage_halt_then_one_line_naming_both(
    monkeypatch: pytest.MonkeyPatch, timeout: str
) -> None:
    monkeypatch.setenv("ALPACA_REQUEST_TIMEOUT_S", timeout)
    monkeypatch.setenv("ALPACA_OUTAGE_HALT_S", "60")

    error = load_error()

    assert error.problems == (
        "ALPACA_REQUEST_TIMEOUT_S, ALPACA_OUTAGE_HALT_S: the request timeout must be shorter "
        "than the outage halt (one slow request would halt trading)",
    )


def test_load_when_request_timeout_below_outage_halt_then_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALPACA_REQUEST_TIMEOUT_S", "59.5")
    monkeypatch.setenv("ALPACA_OUTAGE_HALT_S", "60")

    alpaca = load_settings(None).alpaca

    assert (alpaca.request_timeout_s, alpaca.outage_halt_s) == (59.5, 60.0)
