"""The two processes of a chaos run: the standalone fake Alpaca server and the engine as the
trader starts it (``run_bot.py --console`` in paper mode, no ``.env``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.console_proc import REPO, clean_env

READY_PREFIX = "Trading console ("


class Lines:
    """Every line a child prints on one pipe, read in the background (a pipe never fills)."""

    def __init__(
        self, stream: asyncio.StreamReader | None, label: str, tee: Path | None = None
    ) -> None:
        self.items: list[str] = []
        self._tee = tee
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._label = label
        self._task = asyncio.get_running_loop().create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader | None) -> None:
        try:
            if stream is None:
                return
            tee = self._tee.open("a") if self._tee is not None else None
            try:
                while raw := await stream.readline():
                    line = raw.decode(errors="replace").rstrip("\n")
                    self.items.append(line)
                    if tee is not None:
                        tee.write(line + "\n")
                        tee.flush()
                    self._changed.set()
            finally:
                if tee is not None:
                    tee.close()
        finally:
            self.closed.set()
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[str], bool], *, start: int = 0, within: float = 30.0
    ) -> tuple[int, str]:
        """The first line from index ``start`` on that matches: (index, line)."""
        deadline = time.monotonic() + within
        seen = start
        while True:
            while seen < len(self.items):
                if predicate(self.items[seen]):
                    return seen, self.items[seen]
                seen += 1
            if self.closed.is_set():
                raise ChaosError(f"{self._label} ended without the line:\n" + self.tail())
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChaosError(
                    f"{self._label}: no such line within {within:g} s:\n" + self.tail()
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.items[-n:])

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class ChaosError(AssertionError):
    """A run could not be driven (a process died early, a line never came)."""


class Fake:
    """``python -m tests.fakes.alpaca`` in its own process, and a REST client on it."""

    def __init__(self, proc: asyncio.subprocess.Process, env: dict[str, str], out: Lines) -> None:
        self.proc = proc
        self.env = env
        self.out = out
        self.base_url = env["ALPACA_TRADING_URL"]
        self._headers = {
            "APCA-API-KEY-ID": env["APCA_API_KEY_ID"],
            "APCA-API-SECRET-KEY": env["APCA_API_SECRET_KEY"],
        }
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @classmethod
    async def start(cls, *, speed: float, args: Sequence[str] = ()) -> Fake:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.fakes.alpaca",
            "--port",
            "0",
            "--speed",
            f"{speed:g}",
            "--always-open",
            *args,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = Lines(proc.stdout, "the fake")
        await out.wait_for(lambda s: s.startswith("ALPACA_DATA_STREAM_URL="))
        env: dict[str, str] = {}
        for line in out.items:
            key, sep, value = line.strip().partition("=")
            if sep and key.isupper():
                env[key] = value
        return cls(proc, env, out)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def get(self, path: str, **query: str) -> Any:
        async with self._http.get(self.base_url + path, params=query, headers=self._headers) as r:
            r.raise_for_status()
            return await r.json()

    async def post(self, path: str, body: object) -> Any:
        async with self._http.post(
            self.base_url + path, data=json.dumps(body), headers=self._headers
        ) as r:
            r.raise_for_status()
            return await r.json()

    async def stop(self) -> None:
        await self._http.close()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)  # a scenario may have stopped it
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self.out.close()


def engine_env(fake: Fake, **extra: str) -> dict[str, str]:
    """Paper mode on ``fake``; a fast golden cross so it trades every few bars; nothing
    from the developer's environment decides where orders go."""
    env = {k: "" for k in os.environ if k.startswith("SIM_")}
    env.update(fake.env)
    env.update(
        {
            "STRATEGY_FAST": "2",
            "STRATEGY_SLOW": "5",
            "ALPACA_REQUEST_TIMEOUT_S": "3",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


class Engine:
    """``run_bot.py --console --env-file /dev/null --data-dir <dir>`` in paper mode."""

    def __init__(self, proc: asyncio.subprocess.Process, started: float, tee: Path) -> None:
        self.proc = proc
        self.started = started
        self.out = Lines(proc.stdout, "the engine", tee)
        self.err = Lines(proc.stderr, "the engine's stderr", tee.with_suffix(".err"))
        self.ready_s = 0.0

    @classmethod
    async def start(
        cls, data_dir: Path, env: dict[str, str], *, within: float = 60, logs: Path | None = None
    ) -> Engine:
        """``logs``: where its output is kept (default: beside ``data_dir``)."""
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "run_bot.py",
            "--console",
            "--env-file",
            os.devnull,
            "--data-dir",
            str(data_dir),
            cwd=REPO,
            env=clean_env(env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # Everything it prints, appended beside its data dir (kept with --keep).
        tee = (logs or data_dir.parent) / f"{data_dir.name}-console.log"
        engine = cls(proc, started, tee)
        try:
            await engine.out.wait_for(lambda s: s.startswith(READY_PREFIX), within=within)
        except ChaosError as exc:
            await engine.kill()
            raise ChaosError(f"{exc}\nstderr:\n{engine.err.tail()}") from None
        engine.ready_s = time.monotonic() - started
        return engine

    async def send(self, line: str) -> int:
        """Send a command; returns the index of the first output line that can answer it."""
        mark = len(self.out.items)
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()
        return mark

    async def ask(self, line: str, predicate: Callable[[str], bool], within: float = 30) -> str:
        mark = await self.send(line)
        return (await self.out.wait_for(predicate, start=mark, within=within))[1]

    async def state(self) -> str:
        """ACTIVE, REDUCING or HALTED, as ``!status`` prints it."""
        line = await self.ask(
            "!status", lambda s: any(w in s for w in ("ACTIVE", "REDUCING", "HALTED"))
        )
        return next(w for w in ("ACTIVE", "REDUCING", "HALTED") if w in line)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()  # SIGKILL: no cleanup of any kind
        await self.proc.wait()
        await self.out.closed.wait()
        await self.err.closed.wait()

    async def quit(self, within: float = 30) -> int:
        """``!quit`` and wait; returns the exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.send("!quit")
            try:
                async with asyncio.timeout(within):
                    await self.proc.wait()
            except TimeoutError:
                await self.kill()
        await self.out.closed.wait()
        await self.err.closed.wait()
        code = self.proc.returncode
        assert code is not None
        return code

    def tracebacks(self) -> int:
        return sum(1 for line in self.err.items if line.startswith("Traceback"))
