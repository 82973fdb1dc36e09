"""Virtual time for tests with several tasks that sleep: time jumps to the next wake-up as
soon as every task is waiting, so a 60 s outage takes milliseconds and stays exact."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime

from engine.clock import TestClock

# Loop passes that let woken tasks run before time moves on (they may sleep again).
_SETTLE_PASSES = 20


class VirtualTime:
    """``sleep`` for the code under test, ``run_until`` for the test."""

    def __init__(self, clock: TestClock | None = None) -> None:
        self.clock = clock or TestClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        wake = self.clock.monotonic() + max(0.0, seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (wake, next(self._order), future))
        await future

    async def settle(self) -> None:
        for _ in range(_SETTLE_PASSES):
            await asyncio.sleep(0)

    async def run_until(self, mono: float) -> None:
        """Advance to ``mono``, waking every sleeper due on the way, in order."""
        while True:
            await self.settle()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # cancelled while asleep
            if not self._sleepers or self._sleepers[0][0] > mono:
                break
            wake, _, future = heapq.heappop(self._sleepers)
            if wake > self.clock.monotonic():
                self.clock.advance(wake - self.clock.monotonic())
            future.set_result(None)
        if mono > self.clock.monotonic():
            self.clock.advance(mono - self.clock.monotonic())
        await self.settle()
