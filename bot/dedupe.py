"""The same control command sent twice (a double tap, a resend on a flaky phone) runs once.

Plain code with an injected clock. A command is identified by (user id, command, args); a
repeat is refused while the first is still running, and for ``window_s`` after it started.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bot import fmt
from engine.clock import Clock

Key = tuple[int, str, str]


def dedupe_key(user_id: int, command: str, args: str = "") -> Key:
    return (user_id, command.lower(), " ".join(args.lower().split()))


@dataclass(slots=True)
class _Run:
    started: float
    running: bool


class DedupeGuard:
    def __init__(self, clock: Clock, window_s: float) -> None:
        self._clock = clock
        self.window_s = window_s
        self._runs: dict[Key, _Run] = {}

    def begin(self, key: Key) -> str | None:
        """None when the command may run (and is now marked running); else the short reply
        for the repeat."""
        if self.window_s <= 0:
            return None
        now = self._clock.monotonic()
        self._forget_before(now - self.window_s)
        run = self._runs.get(key)
        label = f"`{key[1]}{' ' + key[2] if key[2] else ''}`"
        if run is not None and run.running:
            return f"⏳ {label} is already running ({fmt.duration(now - run.started)}); ignored."
        if run is not None:
            return f"↩️ {label} just ran ({fmt.duration(now - run.started)} ago); ignored."
        self._runs[key] = _Run(started=now, running=True)
        return None

    def end(self, key: Key) -> None:
        run = self._runs.get(key)
        if run is not None:
            run.running = False

    @contextmanager
    def running(self, key: Key) -> Iterator[str | None]:
        """``with guard.running(key) as refusal:`` — run the body only when refusal is None."""
        refusal = self.begin(key)
        try:
            yield refusal
        finally:
            if refusal is None:
                self.end(key)

    def _forget_before(self, cutoff: float) -> None:
        for key, run in list(self._runs.items()):
            if not run.running and run.started < cutoff:
                del self._runs[key]
