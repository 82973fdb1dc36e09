"""``run_bot.py`` from a terminal: the console demo, scripted input, and startup errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.app import truncated_sample_csv
from tests.support.console_proc import ConsoleProcess, run_bot

pytestmark = pytest.mark.slow

CLOSED = "127.0.0.1:9"  # the discard port: nothing listens on loopback
PAPER_NOWHERE = {
    "TRADING_MODE": "paper",
    "APCA_API_KEY_ID": "KEYID",
    "APCA_API_SECRET_KEY": "SECRETKEY",
    "ALPACA_TRADING_URL": f"http://{CLOSED}",
    "ALPACA_TRADE_STREAM_URL": f"ws://{CLOSED}/stream",
    "ALPACA_DATA_URL": f"http://{CLOSED}",
    "ALPACA_DATA_STREAM_URL": f"ws://{CLOSED}/v2/iex",
}
"""Paper mode pointed at a broker that is not there."""


def test_console_when_issue_script_piped_then_flat_book_and_exit_zero(tmp_path: Path) -> None:
    result = run_bot(
        "--console",
        "--data-dir",
        str(tmp_path),
        stdin="!status\n!positions\n!flatten\n!flatten now\n!status\n!quit\n",
    )

    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Nothing open at the first minute: both say so and nothing runs (as on Discord).
    assert out.splitlines().count("Nothing to flatten: no positions and no open orders.") == 2
    assert "Flat in" not in out
    assert "REDUCING" not in out
    # Alerts are delivered asynchronously and may follow it: find the last status block.
    final_status = out.rsplit("🟢 ACTIVE (by ", 1)[1]
    assert "0 positions · 0 open orders" in final_status
    assert out.rstrip().endswith("Stopped.")


async def test_console_when_positions_held_then_flatten_closes_them_all(tmp_path: Path) -> None:
    env = {"SIM_REPLAY_SPEED": "max", "SIM_REPLAY_CSV": str(truncated_sample_csv(tmp_path))}
    console = await ConsoleProcess.start(tmp_path / "data", env)
    await console.poll_status_until("replay finished")
    await console.send("!positions")
    first = await console.read_until(lambda s: " @ " in s or s == "No open positions.")
    await console.send("!flatten")
    await console.read_until(lambda s: "Flat in" in s or "Not flat" in s)
    await console.send("!positions")
    await console.send("!orders")
    await console.send("!quit")
    code, _, err = await console.finish()

    assert code == 0, err
    out = "\n".join(console.lines)
    assert " @ " in first, "the strategy should hold positions by noon"
    assert "✅ Flat in" in out
    assert "🟡 REDUCING (was ACTIVE) by console: flatten in progress" in out
    tail = out.rsplit("✅ Flat in", 1)[1]
    assert "No open positions." in tail
    assert "No open orders." in tail


def test_console_when_pnl_then_equity_png_written_to_data_dir_and_path_printed(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    result = run_bot("--console", "--data-dir", str(data), stdin="!pnl\n!quit\n")

    assert result.returncode == 0, result.stderr
    (line,) = [s for s in result.stdout.splitlines() if s.startswith("📈 Equity chart: ")]
    path = Path(line.removeprefix("📈 Equity chart: "))
    assert path.parent == data.resolve()
    assert path.name.startswith("equity-")
    assert path.suffix == ".png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "Fees today $" in result.stdout  # the text report comes with it


def test_console_when_input_is_malformed_then_clear_message_and_nothing_changes(
    tmp_path: Path,
) -> None:
    result = run_bot(
        "--console",
        "--data-dir",
        str(tmp_path),
        stdin="status\n!bogus\n!status extra\n!resume nonsense\n!flatten later\n!status\n",
    )

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Unknown command 'status'. Type !help for the list." in out
    assert "Unknown command '!bogus'." in out
    assert "!status takes no arguments." in out
    assert "Usage: !resume [override]" in out
    assert "Usage: !flatten [now]" in out
    status_heads = [line for line in out.splitlines() if line.startswith("🟢 ACTIVE (by ")]
    assert len(status_heads) == 1  # the one valid !status ran, the bad ones did not
    assert status_heads[0].startswith("🟢 ACTIVE (by system")  # state untouched


def test_run_bot_when_no_console_and_no_token_then_exit_nonzero_naming_setting(
    tmp_path: Path,
) -> None:
    result = run_bot("--data-dir", str(tmp_path))

    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stderr
    assert "--console" in result.stderr


def test_run_bot_when_setting_invalid_then_exit_nonzero_without_echoing_secrets(
    tmp_path: Path,
) -> None:
    secret = "sk-very-secret-token-value"
    result = run_bot(
        "--console",
        "--data-dir",
        str(tmp_path),
        env={"DISCORD_TOKEN": secret, "RISK_MAX_POSITION_QTY": "lots"},
    )

    assert result.returncode == 2
    assert "RISK_MAX_POSITION_QTY" in result.stderr
    assert secret not in result.stderr + result.stdout
    assert "lots" not in result.stderr


def test_console_when_broker_unreachable_at_start_then_one_line_and_exit_one(
    tmp_path: Path,
) -> None:
    result = run_bot(
        "--console",
        "--data-dir",
        str(tmp_path),
        stdin="!quit\n",
        env={**PAPER_NOWHERE, "ALPACA_REQUEST_TIMEOUT_S": "1"},
    )

    assert result.returncode == 1
    assert "Cannot start: cannot reach Alpaca" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "SECRETKEY" not in result.stderr + result.stdout


def test_console_when_bars_file_malformed_then_one_line_naming_file_and_line(
    tmp_path: Path,
) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text(
        "timestamp,symbol,open,high,low,close,volume\n"
        "2026-11-20T14:30:00Z,AAPL,230,231,229,230.5,100\n"
        "2026-11-20T14:31:00Z,AAPL,230,229,231,230.5,100\n"  # high below low
    )
    result = run_bot(
        "--console", "--data-dir", str(tmp_path / "data"), env={"SIM_REPLAY_CSV": str(bars)}
    )

    assert result.returncode == 1
    assert "Cannot start:" in result.stderr
    assert "bars.csv, line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_when_bars_file_has_none_of_the_symbols_then_one_line_naming_them(
    tmp_path: Path,
) -> None:
    bars = tmp_path / "tsla.csv"
    bars.write_text(
        "timestamp,symbol,open,high,low,close,volume\n"
        "2026-11-20T14:30:00Z,TSLA,230,231,229,230.5,100\n"
        "2026-11-20T14:31:00Z,TSLA,230,231,229,230.5,100\n"
    )
    result = run_bot(
        "--console", "--data-dir", str(tmp_path / "data"), env={"SIM_REPLAY_CSV": str(bars)}
    )

    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"Cannot start: {bars} holds no bars for the strategy's symbols")
    assert "(AAPL, MSFT, SPY) but only for TSLA" in line
    assert "STRATEGY_SYMBOLS" in line
    assert "Traceback" not in result.stderr


def test_console_when_data_dir_holds_sim_journal_and_paper_run_then_exit_two_one_line(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    sim = run_bot("--console", "--data-dir", str(data), stdin="!quit\n")
    # Nothing listens at the broker's address: the refusal comes before any broker call.
    paper = run_bot("--console", "--data-dir", str(data), stdin="!quit\n", env=PAPER_NOWHERE)

    assert sim.returncode == 0, sim.stderr
    assert paper.returncode == 2
    (line,) = [s for s in paper.stderr.splitlines() if s.startswith("Cannot start:")]
    assert line.startswith(f"Cannot start: the journal in {data} holds sim trading")
    assert f"STORAGE_DATA_DIR={data / 'paper'}" in line
    assert "Traceback" not in paper.stderr
    assert "Trading console" not in paper.stdout
