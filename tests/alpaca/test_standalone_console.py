"""The console in paper mode against the standalone fake Alpaca server, each in its own process,
exactly as a trader would try it by hand: it trades, flattens and halts as on the simulator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot import text
from tests.support.console_proc import ConsoleProcess

pytestmark = pytest.mark.slow


async def test_console_when_paper_on_standalone_fake_then_trades_flattens_and_halts(
    fake_env: dict[str, str], tmp_path: Path
) -> None:
    assert fake_env["TRADING_MODE"] == "paper"
    assert all(
        v.startswith(("http://127.0.0.1:", "ws://127.0.0.1:"))
        for k, v in fake_env.items()
        if k.endswith("_URL")
    )
    console = await ConsoleProcess.start(tmp_path / "data", {**fake_env, **_no_sim()})
    await console.read_until(lambda s: s.startswith("Trading console (paper)"))
    for _ in range(10):  # the golden cross at 1200x may be flat again by the time we ask
        await console.read_until(lambda s: "✅ Bought" in s, within=60)  # the strategy trades
        await console.send("!flatten")
        flat = await console.read_until(
            lambda s: "Flat in" in s or "Not flat" in s or s == text.NOTHING_TO_FLATTEN
        )
        if flat != text.NOTHING_TO_FLATTEN:
            break
    await console.send("!positions")
    await console.read_until(lambda s: s == "No open positions." or " @ " in s)
    await console.send("!halt standalone check")
    await console.read_until(lambda s: "HALTED by console: standalone check" in s)
    await console.send("!status")
    await console.read_until(lambda s: s.startswith("Broker:"))
    await console.send("!quit")
    code, _, err = await console.finish()

    assert code == 0, err
    assert flat.startswith("✅ Flat in"), "\n".join(console.lines[-30:])
    out = "\n".join(console.lines)
    assert "Mode paper" in out
    assert "Broker: alpaca ok" in out
    assert "Reason: standalone check" in out
    after_flatten = out.split("✅ Flat in", 1)[1]
    assert "No open positions." in after_flatten


def _no_sim() -> dict[str, str]:
    """Nothing from the developer's environment decides where orders go."""
    return {k: "" for k in os.environ if k.startswith("SIM_")}


async def test_console_when_keys_refused_with_debug_logs_then_no_secret_anywhere(
    fake_env: dict[str, str], tmp_path: Path
) -> None:
    """Real error paths (401s from REST and the streams, a failed start-up, DEBUG logging)
    leak nothing. The scrubber that would catch a secret someone did log is tested directly
    in tests/integration/test_lifecycle.py."""
    token = "MTQ0fake.discord.token-value"
    key_id, secret = "PKWRONGKEY1234", "wrong/secret+key=="
    env = {
        **fake_env,
        **_no_sim(),
        "APCA_API_KEY_ID": key_id,
        "APCA_API_SECRET_KEY": secret,
        "DISCORD_TOKEN": token,
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        "ALPACA_REQUEST_TIMEOUT_S": "2",
    }
    console = await ConsoleProcess.start(tmp_path / "data", env)
    code, out, err = await console.finish(within=60)

    log_file = (tmp_path / "data" / "trader.log").read_text()
    assert code == 1, "refused keys must stop the start-up"
    assert "Cannot start" in err
    assert "401" in log_file or "not authorized" in log_file  # the errors were logged
    for value in (token, key_id, secret):
        assert value not in out
        assert value not in err
        assert value not in log_file
