"""The broker-outage watchdog: when the broker has been unreachable for too long, halt.

It reads the adapter's ``BrokerHealth`` (every call records success or failure there) and,
while the broker is down or idle, makes a cheap probe call so an outage is noticed, and its
end too, even when nothing else is calling the broker. The halt callback runs once per
outage; after the broker answers again the watchdog re-arms for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from engine.clock import Clock
from engine.errors import BrokerError
from engine.health import BrokerHealth

log = logging.getLogger(__name__)

HaltCallback = Callable[[str], Awaitable[None]]
Probe = Callable[[], Awaitable[object]]
Sleep = Callable[[float], Awaitable[None]]


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
        interval_s: float | None = None,
        probe_every_s: float | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if halt_after_s <= 0:
            raise ValueError(f"halt_after_s must be > 0, got {halt_after_s}")
        self._health = health
        self._clock = clock
        self._halt_after_s = halt_after_s
        self._halt = halt
        self._probe = probe
        # Defaults scale with the limit (1 s and 10 s for 60 s) so an idle engine still
        # notices an outage well within it.
        self._interval_s = interval_s if interval_s is not None else min(1.0, halt_after_s / 10)
        self._probe_every_s = (
            probe_every_s if probe_every_s is not None else min(10.0, halt_after_s / 6)
        )
        self._sleep = sleep
        self._last_probe: float | None = None
        self.fired = False
        """True from the halt until the broker answers again."""
        self.halts = 0

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
            if self.fired:
                log.warning("broker reachable again; the outage watchdog is re-armed")
            self.fired = False
            return False
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

    async def probe_if_due(self) -> None:
        """Call the probe when the broker is down or has not answered lately."""
        if self._probe is None:
            return
        now = self._clock.monotonic()
        if self._last_probe is not None and now - self._last_probe < self._probe_every_s:
            return
        last_ok = self._health.last_ok_at
        idle = last_ok is None or self._clock.now() - last_ok > timedelta(
            seconds=self._probe_every_s
        )
        if self._health.ok and not idle:
            return
        self._last_probe = now
        try:
            await self._probe()
        except BrokerError as exc:
            log.debug("broker probe failed: %s", exc)

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            await self.probe_if_due()
            await self.check()
            await self._sleep(self._interval_s)
