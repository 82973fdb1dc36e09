"""Drive ``run_bot.py --console`` as a child process, the way a trader's terminal would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from config import setting_prefixes

REPO = Path(__file__).resolve().parents[2]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(setting_prefixes())}
    env.update(extra or {})
    return env


def run_bot(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``run_bot.py <args>`` to completion, reading no ``.env``."""
    return subprocess.run(
        [sys.executable, "run_bot.py", "--env-file", os.devnull, *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
    )


class ConsoleProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, data_dir: Path, env: dict[str, str] | None = None) -> ConsoleProcess:
        full_env = clean_env(env)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "run_bot.py",
            "--console",
            "--env-file",
            os.devnull,
            "--data-dir",
            str(data_dir),
            cwd=REPO,
            env=full_env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def read_until(self, predicate: Callable[[str], bool], within: float = 30.0) -> str:
        """Read stdout lines until one matches; returns it."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                while True:
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        raise AssertionError(
                            "console exited early:\n" + "\n".join(self.lines[-30:])
                        )
                    line = raw.decode().rstrip("\n")
                    self.lines.append(line)
                    if predicate(line):
                        return line
        except TimeoutError:
            raise AssertionError(
                f"no matching line within {within} s; the last ones:\n"
                + "\n".join(self.lines[-30:])
            ) from None

    async def poll_status_until(self, needle: str, within: float = 30.0) -> None:
        """Send !status until its output contains ``needle``."""
        async with asyncio.timeout(within):
            while True:
                await self.send("!status")
                line = await self.read_until(lambda s: s.startswith(("Feed:", needle)))
                if needle in line:
                    return
                await asyncio.sleep(0.2)

    async def finish(self, within: float = 30.0) -> tuple[int, str, str]:
        """Close stdin and wait for exit; returns (code, stdout rest, stderr)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        async with asyncio.timeout(within):
            out, err = await self.proc.communicate()
        rest = out.decode()
        self.lines.extend(rest.splitlines())
        code = self.proc.returncode
        assert code is not None
        return code, rest, err.decode()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no cleanup of any kind

    async def wait_killed(self) -> None:
        await self.proc.wait()
