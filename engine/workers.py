"""Per-symbol latest-value buffers between the feed and the strategy workers.

The feed side is synchronous and O(1): it appends the bar to a bounded history (so indicators
never miss a bar) and bumps a version. The worker wakes, looks only at the newest state, and
counts how many updates it coalesced: a burst never builds a queue of stale work.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from engine.domain import Bar, Tick
from engine.strategy.base import BarRow, bar_row


@dataclass(frozen=True, slots=True)
class Update:
    """What a worker gets when it wakes: the newest bar (if a new one arrived) and tick."""

    bar: Bar | None
    tick: Tick | None
    coalesced: int
    """Updates that arrived since the last wake and were folded into this one."""


class SymbolBuffer:
    def __init__(self, symbol: str, history: int) -> None:
        self.symbol = symbol
        self.bars: deque[Bar] = deque(maxlen=history)
        self.rows: deque[BarRow] = deque(maxlen=history)
        """``bars`` as float rows, converted once on arrival for cheap strategy frames."""
        self.last_tick: Tick | None = None
        self.updates = 0
        self.dropped = 0
        self._seen = 0
        self._bar_pending = False
        self._tick_pending = False
        self._wake = asyncio.Event()

    def seed(self, bars: list[Bar]) -> None:
        """Warm-up history; does not wake the worker."""
        for bar in bars:
            self._store_bar(bar)

    def push_bar(self, bar: Bar) -> None:
        if self._store_bar(bar):
            self._bar_pending = True
            self._touch()

    def push_tick(self, tick: Tick) -> None:
        if self.last_tick is not None and tick.ts < self.last_tick.ts:
            return
        self.last_tick = tick
        self._tick_pending = True
        self._touch()

    @property
    def pending(self) -> bool:
        """An update is waiting for the worker."""
        return self._wake.is_set()

    async def next_update(self) -> Update:
        await self._wake.wait()
        return self.take()

    def take(self) -> Update:
        self._wake.clear()
        coalesced = max(0, self.updates - self._seen - 1)
        self.dropped += coalesced
        self._seen = self.updates
        bar = self.bars[-1] if self._bar_pending and self.bars else None
        tick = self.last_tick if self._tick_pending else None
        self._bar_pending = self._tick_pending = False
        return Update(bar=bar, tick=tick, coalesced=coalesced)

    def recent_rows(self, count: int) -> list[BarRow]:
        """The newest ``count`` rows, oldest first."""
        start = max(0, len(self.rows) - count)
        return [self.rows[i] for i in range(start, len(self.rows))]

    def _store_bar(self, bar: Bar) -> bool:
        if self.bars:
            last = self.bars[-1]
            if bar.ts < last.ts:
                return False  # late bar: history already moved on
            if bar.ts == last.ts:
                # An updated bar replaces the one it corrects.
                self.bars[-1] = bar
                self.rows[-1] = bar_row(bar)
                return True
        self.bars.append(bar)
        self.rows.append(bar_row(bar))
        return True

    def _touch(self) -> None:
        self.updates += 1
        self._wake.set()
