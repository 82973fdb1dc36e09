"""The broker-outage watchdog: when the broker has been unreachable for too long, halt.

It reads the adapter's ``BrokerHealth`` (every call records success or failure there, and
the trade stream its liveness signals) and, while the broker is down, idle or suspect, makes
a cheap probe call so an outage is noticed, and its end too, even when nothing else is
calling the broker. The probe runs in its own task: a hung probe never delays a check. The
outage is dated from the first unanswered request (``BrokerHealth``), and the watchdog wakes
at the deadline, so the halt comes within a check interval of ``halt_after_s``.

The halt callback runs once per outage. When the broker answers again after an outage of at
least ``reconcile_after_s``, ``on_recovered(reason)`` runs (the engine reconciles), and the
watchdog re-arms for the next outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from engine.clock import Clock
from engine.errors import BrokerError
from engine.health import BrokerHealth

log = logging.getLogger(__name__)

HaltCallback = Callable[[str], Awaitable[None]]
RecoveredCallback = Callable[[str], Awaitable[object]]
Probe = Callable[[], Awaitable[object]]
Sleep = Callable[[float], Awaitable[None]]

# Wake a hair after the deadline: the halt is for "more than" halt_after_s.
_PAST_DEADLINE_S = 0.01


class OutageMonitor:
    """Calls ``halt(reason)`` once the broker has been unreachable for more than
    ``halt_after_s`` seconds (``ALPACA_OUTAGE_HALT_S``)."""

    def __init__(
        self,
        health: BrokerHealth,
        clock: Clock,
        *,
        halt_after_s: float,
        halt: HaltCallback,
        probe: Probe | None = None,
        on_recovered: RecoveredCallback | None = None,
        interval_s: float | None = None,
        probe_every_s: float | None = None,
        reconcile_after_s: float | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if halt_after_s <= 0:
            raise ValueError(f"halt_after_s must be > 0, got {halt_after_s}")
        self._health = health
        self._clock = clock
        self._halt_after_s = halt_after_s
        self._halt = halt
        self._probe = probe
        self.on_recovered = on_recovered
        # Defaults scale with the limit (1 s, 10 s and 5 s for 60 s) so an idle engine still
        # notices an outage well within it.
        self._interval_s = interval_s if interval_s is not None else min(1.0, halt_after_s / 10)
        self._probe_every_s = (
            probe_every_s if probe_every_s is not None else min(10.0, halt_after_s / 6)
        )
        self._reconcile_after_s = (
            reconcile_after_s if reconcile_after_s is not None else min(5.0, halt_after_s / 12)
        )
        self._sleep = sleep
        self._last_probe: float | None = None
        self._probing: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._outage_since: float | None = None
        self.fired = False
        """True from the halt until the broker answers again."""
        self.halts = 0
        self.recoveries = 0

    def down_for_s(self) -> float | None:
        """Seconds the broker has been unreachable, or None when it is answering."""
        since = self._health.down_since_mono
        if self._health.ok or since is None:
            return None
        return max(0.0, self._clock.monotonic() - since)

    async def check(self) -> bool:
        """One look at the health; returns True when this call halted."""
        down_for = self.down_for_s()
        if down_for is None:
            self._on_answering()
            return False
        if self._outage_since is None:
            self._outage_since = self._health.down_since_mono
        if self.fired or down_for <= self._halt_after_s:
            return False
        self.fired = True
        self.halts += 1
        reason = (
            f"broker unreachable for {down_for:.0f} s (limit {self._halt_after_s:.0f} s); "
            f"last error: {self._health.last_error or 'unknown'}"
        )
        log.critical("halting: %s", reason)
        try:
            await self._halt(reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the outage halt callback failed")
        return True

    def probe_if_due(self) -> asyncio.Task[None] | None:
        """Start the probe, in its own task, when the broker is down or has not answered
        lately, or at once when its stream went silent or answers again, unless a probe is
        in flight. Returns the task it started."""
        if self._probe is None or (self._probing is not None and not self._probing.done()):
            return None
        now = self._clock.monotonic()
        health = self._health
        changed = health.liveness_changed_mono
        urgent = changed is not None and (self._last_probe is None or self._last_probe < changed)
        if not urgent:
            if self._last_probe is not None and now - self._last_probe < self._probe_every_s:
                return None
            last_ok = health.last_ok_at
            idle = last_ok is None or self._clock.now() - last_ok > timedelta(
                seconds=self._probe_every_s
            )
            if health.ok and not idle:
                return None
        self._last_probe = now
        self._probing = asyncio.get_running_loop().create_task(
            self._run_probe(self._probe), name="broker-probe"
        )
        return self._probing

    async def run(self) -> None:
        """Watch until cancelled."""
        try:
            while True:
                self.probe_if_due()
                await self.check()
                await self._sleep(self._next_wait())
        finally:
            for task in (self._probing, self._recovering):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _next_wait(self) -> float:
        down_for = self.down_for_s()
        if down_for is None or self.fired:
            return self._interval_s
        until_halt = self._halt_after_s - down_for + _PAST_DEADLINE_S
        return max(_PAST_DEADLINE_S, min(self._interval_s, until_halt))

    def _on_answering(self) -> None:
        since, self._outage_since = self._outage_since, None
        if self.fired:
            log.warning("broker reachable again; the outage watchdog is re-armed")
        self.fired = False
        if since is None:
            return
        lasted = self._clock.monotonic() - since
        if self.on_recovered is None or lasted < self._reconcile_after_s:
            return
        if self._recovering is not None and not self._recovering.done():
            return  # the previous reconcile still runs; it sees this recovery too
        self.recoveries += 1
        reason = f"broker back after an outage of {lasted:.0f} s"
        log.warning("%s: reconciling", reason)
        self._recovering = asyncio.get_running_loop().create_task(
            self._run_recovered(self.on_recovered, reason), name="broker-recovered"
        )

    @staticmethod
    async def _run_probe(probe: Probe) -> None:
        try:
            await probe()
        except BrokerError as exc:
            log.debug("broker probe failed: %s", exc)

    @staticmethod
    async def _run_recovered(callback: RecoveredCallback, reason: str) -> None:
        try:
            await callback(reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile after the outage failed")
