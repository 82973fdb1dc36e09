"""A journal that cannot be opened is one clear ``Cannot start:`` line through the real
console, naming the file and what to do: never a traceback, never a silent fresh start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.console_proc import run_bot
from tests.support.journal_faults import fill_disk, make_read_only, small_tmpfs

pytestmark = pytest.mark.slow
JOURNAL = "trader.sqlite"


def console(data: Path, stdin: str = "!quit\n", **env: str) -> subprocess.CompletedProcess[str]:
    return run_bot("--console", "--data-dir", str(data), stdin=stdin, env=env)


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``Cannot start:`` line of a start that failed cleanly."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [line] = [s for s in result.stderr.splitlines() if s.startswith("Cannot start:")]
    return line


def test_console_when_journal_is_garbage_then_one_line_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / JOURNAL).write_bytes(b"these are not the bytes you are looking for\n" * 200)

    line = refused(console(data))

    assert str(data / JOURNAL) in line
    assert "is not an SQLite database" in line
    assert "move it aside" in line


def test_console_when_journal_is_cut_short_then_one_line_and_file_left_alone(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    assert console(data).returncode == 0
    path = data / JOURNAL
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(size // 2)

    line = refused(console(data))

    assert f"{path} is cut short ({size // 2} of {size} bytes)" in line
    assert path.stat().st_size == size // 2  # nothing written over the evidence


def test_console_when_journal_empty_beside_earlier_state_then_refused_not_a_fresh_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    halted = console(data, "!halt keep saved halt\n!quit\n")
    assert halted.returncode == 0, halted.stderr
    (data / JOURNAL).write_bytes(b"")

    line = refused(console(data, "!status\n!quit\n"))

    assert f"journal {data / JOURNAL} is empty (0 bytes)" in line
    assert "sim_account.jsonl" in line
    assert "would lose a saved HALT" in line
    assert (data / JOURNAL).stat().st_size == 0


def test_console_when_journal_empty_in_a_new_data_dir_then_a_first_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / JOURNAL).write_bytes(b"")

    result = console(data, "!status\n!quit\n")

    assert result.returncode == 0, result.stderr
    assert "ACTIVE" in result.stdout


def test_console_when_journal_dir_is_read_only_then_one_line_saying_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with small_tmpfs(data / "journal") as mount:
        name = "journal/trader.sqlite"  # the log file stays writable in the data dir
        assert console(data, STORAGE_DB_NAME=name).returncode == 0
        make_read_only(mount)

        line = refused(console(data, STORAGE_DB_NAME=name))

    assert f"journal {data / name} cannot be opened" in line
    assert f"check that {mount} is writable" in line


def test_console_when_disk_is_full_at_start_then_one_line_and_no_empty_journal_left(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with small_tmpfs(data / "journal", size="1m") as mount:
        fill_disk(mount)
        name = "journal/trader.sqlite"

        line = refused(console(data, STORAGE_DB_NAME=name))

        assert f"journal {data / name} cannot be opened: the disk is full" in line
        assert "free some space" in line
        assert not (data / name).exists()  # the next start, with space, is a first start
