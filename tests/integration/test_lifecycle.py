"""Process lifecycle: graceful SIGTERM, the container healthcheck, no secrets in logs."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from bot.logs import REDACTED, configure_logging
from config import LogSettings
from tests.support.app import truncated_sample_csv
from tests.support.console_proc import REPO, ConsoleProcess

pytestmark = pytest.mark.slow


def acked_fills(lines: list[str]) -> Counter[tuple[str, Decimal, str, Decimal]]:
    """Fill alerts as printed, ``[#trades] ✅ Bought 10 AAPL @ $231.97 · position +10`` (a
    burst prints one line per fill, ``2 × ✅ ...`` for repeats) -> (buy, 10, AAPL, 231.97)."""
    acked: Counter[tuple[str, Decimal, str, Decimal]] = Counter()
    for line in lines:
        if "✅ " not in line:
            continue
        head, tail = line.split("✅ ", 1)
        repeat = head.rstrip().removesuffix("×").split()[-1:] if "×" in head else ["1"]
        words = tail.split()
        side = "buy" if words[0] == "Bought" else "sell"
        key = (side, Decimal(words[1]), words[2], Decimal(words[4].lstrip("$").replace(",", "")))
        acked[key] += int(repeat[0])
    return acked


def healthcheck(
    data_dir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "run_bot.py",
            "healthcheck",
            "--env-file",
            os.devnull,
            "--data-dir",
            str(data_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


async def test_sigterm_when_trading_then_exit_zero_within_ten_seconds_with_every_acked_fill(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = {"SIM_REPLAY_SPEED": "2000", "SIM_REPLAY_CSV": str(truncated_sample_csv(tmp_path))}
    console = await ConsoleProcess.start(data_dir, env)
    for _ in range(3):
        await console.read_until(lambda s: "✅ " in s)

    console.proc.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    started = loop.time()
    code, _, err = await console.finish(within=10)
    took = loop.time() - started

    assert code == 0, err
    assert took < 10
    assert "Stopped." in console.lines
    acked = acked_fills(console.lines)
    with sqlite3.connect(data_dir / "trader.sqlite") as db:
        rows = db.execute("SELECT side, qty, symbol, price FROM fills").fetchall()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    journaled = Counter((side, Decimal(q), sym, Decimal(p)) for side, q, sym, p in rows)
    assert acked, "no fills were acknowledged before the signal"
    assert not acked - journaled, "an acknowledged fill is missing from the journal"
    assert meta.get("clean_shutdown") == "true"


async def test_healthcheck_when_engine_alive_then_zero_and_when_stale_then_nonzero(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    missing = healthcheck(data_dir)
    assert missing.returncode == 1
    assert "no liveness file" in missing.stdout

    env = {"SIM_REPLAY_SPEED": "max", "SIM_REPLAY_CSV": str(truncated_sample_csv(tmp_path))}
    console = await ConsoleProcess.start(data_dir, env)
    await console.poll_status_until("replay finished")
    alive = healthcheck(data_dir)
    await console.send("!quit")
    await console.finish()

    assert alive.returncode == 0, alive.stdout
    assert alive.stdout.startswith("healthy")
    stale = healthcheck(data_dir, {"ENGINE_HEALTH_STALE_S": "0.001"})
    assert stale.returncode == 1
    assert "unhealthy: engine last alive" in stale.stdout


def test_logs_when_secrets_appear_in_messages_and_tracebacks_then_scrubbed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, key, secret = "MTIzNDU2Nzg5.fake.discord-token", "PKFAKEKEYID123", "fake/secret+key=="
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    configure_logging(LogSettings(), console=False, log_dir=None, secrets=[token, key, secret])
    log = logging.getLogger("engine.test")
    try:
        log.error("login failed with token %s", token, extra={"symbol": "AAPL"})
        try:
            raise RuntimeError(f"401 for key {key} and secret {secret}")
        except RuntimeError:
            log.exception("broker call failed")
        log.warning("url https://api/?k=%s&s=%s", key, secret)
    finally:
        logging.getLogger().handlers.clear()

    output = stream.getvalue()
    for value in (token, key, secret):
        assert value not in output
    assert output.count(REDACTED) >= 5
    assert '"symbol": "AAPL"' in output
    assert '"component": "engine.test"' in output
