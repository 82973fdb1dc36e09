"""The console's log file on a full disk: one line on stderr for the outage, not a traceback
for every log line (found by the chaos suite's full-disk run, python -m tests.chaos)."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from bot.logs import configure_logging
from config import LogSettings


class FullDisk:
    """A file stream whose writes fail as on a full disk until ``space`` is set."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.space = False

    def write(self, text: str) -> int:
        if not self.space:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(text)  # type: ignore[attr-defined, no-any-return]

    def flush(self) -> None:
        if self.space:
            self.real.flush()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.real.close()  # type: ignore[attr-defined]


def test_log_file_when_disk_full_then_one_stderr_line_no_traceback_and_count_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(level="INFO"), console=True, log_dir=tmp_path)
    root = logging.getLogger()
    try:
        (handler,) = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        disk = FullDisk(handler.stream)
        handler.stream = disk  # type: ignore[assignment]
        log = logging.getLogger("engine.test")
        for i in range(5):
            log.info("fill %d", i)
        disk.space = True
        log.info("after the disk")
        handler.flush()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()

    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--- Logging error ---" not in err
    assert err.count("cannot be written") == 1
    assert "No space left on device" in err
    assert "written again; 5 log lines dropped" in err
    assert "after the disk" in (tmp_path / "trader.log").read_text()
