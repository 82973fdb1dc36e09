"""Test-wide isolation: no developer .env values or stray environment settings leak in."""

from __future__ import annotations

import os

import pytest

from config import setting_prefixes

SETTING_PREFIXES = setting_prefixes()


@pytest.fixture(autouse=True)
def _isolated_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name, raising=False)
