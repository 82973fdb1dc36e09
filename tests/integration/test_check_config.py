"""``run_bot.py check-config``, warnings about names that set nothing, and a configuration
error held long enough that a container restart policy does not loop on it."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.support.console_proc import REPO, clean_env, run_bot

pytestmark = pytest.mark.slow

TOKEN = "MTIzNDU2Nzg5.discord-token-SECRET"
SECRET_KEY = "secret-key-SECRET-0123456789"


def test_check_config_when_valid_then_prints_settings_masked_and_exits_zero() -> None:
    result = run_bot(
        "check-config",
        env={
            "DISCORD_TOKEN": TOKEN,
            "APCA_API_KEY_ID": "PKKEYID0123",
            "APCA_API_SECRET_KEY": SECRET_KEY,
            "RISK_MAX_POSITION_QTY": "5",
        },
    )

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "  DISCORD_TOKEN=set" in lines
    assert "  APCA_API_SECRET_KEY=set" in lines
    assert "  RISK_MAX_POSITION_QTY=5" in lines
    assert "  TRADING_MODE=paper" in lines
    assert lines[-1] == "Settings OK for the Discord bot."
    for secret in (TOKEN, SECRET_KEY, "PKKEYID0123"):
        assert secret not in result.stdout + result.stderr


def test_check_config_when_setting_invalid_then_names_it_and_exits_two() -> None:
    result = run_bot("check-config", "--console", env={"RISK_DAILY_LOSS_LIMIT": "-7000"})

    assert result.returncode == 2
    assert "RISK_DAILY_LOSS_LIMIT: Input should be greater than 0" in result.stdout
    assert "-7000" not in result.stdout + result.stderr
    assert "Effective settings" not in result.stdout


def test_check_config_when_no_token_for_the_bot_then_exits_two_but_console_is_fine() -> None:
    bot = run_bot("check-config")
    console = run_bot("check-config", "--console")

    assert bot.returncode == 2
    assert "DISCORD_TOKEN is not set" in bot.stdout
    assert console.returncode == 0, console.stdout
    assert console.stdout.splitlines()[-1] == "Settings OK for the console."


def test_check_config_when_name_misspelt_then_warns_with_the_closest_setting() -> None:
    result = run_bot("check-config", "--console", env={"RISK_MAX_POSITON_QTY": "5"})

    assert result.returncode == 0
    assert (
        "Warning: RISK_MAX_POSITON_QTY (in the environment) is not a setting and is ignored: "
        "did you mean RISK_MAX_POSITION_QTY?"
    ) in result.stdout.splitlines()
    assert "  RISK_MAX_POSITION_QTY=1000" in result.stdout.splitlines()  # the default stays


def test_console_when_dotenv_name_misspelt_then_start_up_warns_on_stderr(tmp_path: Path) -> None:
    env_file = tmp_path / "trader.env"
    env_file.write_text("RISK_MAX_POSITON_QTY=5\n", encoding="utf-8")

    result = run_bot(
        "--console", "--env-file", str(env_file), "--data-dir", str(tmp_path), stdin="!quit\n"
    )

    assert result.returncode == 0, result.stderr
    assert f"RISK_MAX_POSITON_QTY (in {env_file}) is not a setting" in result.stderr
    assert "did you mean RISK_MAX_POSITION_QTY?" in result.stderr


async def test_run_when_config_error_and_wait_set_then_stays_up_until_sigterm_then_exits_two(
    tmp_path: Path,
) -> None:
    # The container's command: .env copied from the example, no DISCORD_TOKEN.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "run_bot.py",
        "--env-file",
        str(REPO / "config" / "example.env"),
        "--data-dir",
        str(tmp_path),
        "--config-error-wait",
        "120",
        cwd=REPO,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while not seen or not seen[-1].startswith("Waiting 120 s before exiting"):
            seen.append((await proc.stderr.readline()).decode())
            assert seen[-1], "exited early:\n" + "".join(seen)

    assert proc.returncode is None  # held, not exited: no restart loop
    assert any("DISCORD_TOKEN is not set" in line for line in seen)
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        code = await proc.wait()
    assert code == 2


def test_run_when_config_error_without_wait_then_exits_two_at_once() -> None:
    result = run_bot(env={"STRATEGY_FAST": "50"}, timeout=30)

    assert result.returncode == 2
    assert "STRATEGY_FAST, STRATEGY_SLOW" in result.stderr
    assert "Waiting" not in result.stderr
