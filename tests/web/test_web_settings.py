"""WEB_* settings: off by default, loopback by default, and never exposed without a token."""

from __future__ import annotations

import pytest

from config import SettingsError, load_settings

LONG_TOKEN = "a-long-enough-web-token-SECRET"


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[str, ...]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(None)
    for value in env.values():
        if len(value) > 5:
            assert value not in str(caught.value)
    return caught.value.problems


def test_defaults_when_nothing_set_then_off_on_loopback_port_8080() -> None:
    web = load_settings(None).web

    assert (web.enabled, web.host, web.port, web.token) == (False, "127.0.0.1", 8080, None)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_enabled_when_loopback_without_token_then_accepted(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("WEB_ENABLED", "true")
    monkeypatch.setenv("WEB_HOST", host)

    assert load_settings(None).web.enabled is True


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "trader.example.com"])
def test_enabled_when_not_loopback_without_token_then_one_line_naming_the_settings(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    (line,) = problems(monkeypatch, WEB_ENABLED="true", WEB_HOST=host)

    assert line.startswith("WEB_HOST, WEB_TOKEN: WEB_TOKEN is required when WEB_HOST is not")
    assert "SSH tunnel" in line
    assert "\n" not in line


def test_enabled_when_not_loopback_with_token_then_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_ENABLED", "true")
    monkeypatch.setenv("WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("WEB_TOKEN", LONG_TOKEN)

    web = load_settings(None).web

    assert web.token is not None
    assert web.token.get_secret_value() == LONG_TOKEN
    assert load_settings(None).redacted_summary()["WEB_TOKEN"] == "set"


def test_disabled_when_not_loopback_without_token_then_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_HOST", "0.0.0.0")

    assert load_settings(None).web.enabled is False


def test_token_when_short_then_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = problems(monkeypatch, WEB_TOKEN="short-SECRET")

    assert line.startswith("WEB_TOKEN: must be at least 16 characters")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_PORT", "70000", "less than or equal to 65535"),
        ("WEB_PORT", "http", "valid integer"),
        ("WEB_HOST", "http://0.0.0.0", "IP address or a host name"),
        ("WEB_ENABLED", "maybe", "true or false"),
    ],
)
def test_web_setting_when_malformed_then_named_with_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    (line,) = problems(monkeypatch, **{name: value})

    assert line.startswith(f"{name}: ")
    assert message in line
