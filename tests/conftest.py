"""Test-wide isolation: no developer .env values or stray environment settings leak in."""

from __future__ import annotations

import os

import pytest

SETTING_PREFIXES = (
    "DISCORD_",
    "ALPACA_",
    "APCA_",
    "TRADING_",
    "CHANNEL_",
    "RISK_",
    "STRATEGY_",
    "SCHEDULE_",
    "STORAGE_",
    "SIM_",
    "ENGINE_",
    "LOG_",
)


@pytest.fixture(autouse=True)
def _isolated_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name, raising=False)
