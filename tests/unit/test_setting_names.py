"""Names that look like settings but set nothing: warned about with the closest real name."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import setting_names, setting_prefixes, unknown_setting_names


def test_unknown_names_when_env_has_a_typo_then_warns_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RISK_MAX_POSITON_QTY", "5")

    (warning,) = unknown_setting_names(None)

    assert warning.startswith("RISK_MAX_POSITON_QTY (in the environment) is not a setting")
    assert warning.endswith("did you mean RISK_MAX_POSITION_QTY?")


def test_unknown_names_when_dotenv_has_a_typo_then_warning_names_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "bot.env"
    env_file.write_text("sim_replay_sped=max\nSIM_STARTING_CASH=5000\n", encoding="utf-8")

    (warning,) = unknown_setting_names(env_file)

    assert warning.startswith(f"SIM_REPLAY_SPED (in {env_file}) is not a setting")
    assert "did you mean SIM_REPLAY_SPEED?" in warning


def test_unknown_names_when_nothing_is_close_then_points_at_the_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_COLOURS_PLEASE", "secret-looking-value")

    (warning,) = unknown_setting_names(None)

    assert "LOG_COLOURS_PLEASE" in warning
    assert "see config/example.env" in warning
    assert "secret-looking-value" not in warning


def test_unknown_names_when_only_real_names_and_aliases_then_no_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ALPACA_API_KEY", "APCA_API_BASE_URL", "TRADING_MODE", "RISK_PDT_GUARD"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("RISKY_BUSINESS", "1")  # not our prefix: someone else's
    monkeypatch.setenv("PATH_EXTRA", "1")
    env_file = tmp_path / ".env"
    env_file.write_text("DISCORD_TOKEN=\nSTRATEGY_SYMBOLS=SPY\n", encoding="utf-8")

    assert unknown_setting_names(env_file) == []


def test_setting_names_when_listed_then_every_section_and_alias_is_there() -> None:
    names = setting_names()

    assert {"TRADING_MODE", "TRADING_ALLOW_LIVE", "DISCORD_TOKEN", "LOG_FORMAT"} <= names
    assert {"APCA_API_KEY_ID", "ALPACA_API_KEY", "APCA_API_BASE_URL"} <= names
    assert set(setting_prefixes()) >= {"APCA_", "RISK_", "SIM_", "TRADING_", "STORAGE_"}
