"""The hot-path benchmark's command line: a CPU it cannot run on is refused up front."""

from __future__ import annotations

import os

import pytest

from tests.bench import hot_path


def test_cpu_not_available_is_refused_before_any_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_run(*_args: object) -> dict[str, float]:
        raise AssertionError("a run started")

    monkeypatch.setattr(hot_path, "run_in_child", no_run)
    unavailable = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(SystemExit) as exit_info:
        hot_path.main(["--runs", "1", "--quick", "--cpu", str(unavailable)])
    assert exit_info.value.code == 2
    assert f"--cpu {unavailable}: not one of this process's CPUs" in capsys.readouterr().err
