"""Market data waiting for the engine's bar path, per symbol.

The feed side is synchronous and O(1): a bar is appended to its symbol's pending list (a
strategy must see every bar, so bars never coalesce), a tick replaces the older one. One
dispatcher takes symbols out in the order they first got data and handles each in a slice
of the loop, so a burst neither queues stale work nor holds a command or a heartbeat
behind it. What arrives faster than it is handled folds into one handling, and is counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from engine.domain import Bar, Tick


@dataclass(slots=True)
class Update:
    """What arrived for one symbol since it was last handled."""

    symbol: str
    bars: list[Bar] = field(default_factory=list)
    """Every bar, oldest first; only the newest may lead to an order."""
    tick: Tick | None = None
    """The newest trade, if one arrived."""
    count: int = 0
    """Updates folded into this one."""

    @property
    def coalesced(self) -> int:
        return max(0, self.count - 1)


class MarketDataQueue:
    def __init__(self) -> None:
        self._pending: dict[str, Update] = {}  # insertion order: first come, first served
        self._last_tick: dict[str, Tick] = {}
        self._wake = asyncio.Event()
        self.updates = 0
        self.dropped = 0
        """Updates folded into a later one: stale ticks, and bars a newer bar followed
        before they were handled (their strategy still saw them, but could not trade)."""

    def push_bar(self, bar: Bar) -> None:
        self._update(bar.symbol).bars.append(bar)

    def push_tick(self, tick: Tick) -> None:
        last = self._last_tick.get(tick.symbol)
        if last is not None and tick.ts < last.ts:
            return
        self._last_tick[tick.symbol] = tick
        self._update(tick.symbol).tick = tick

    def last_tick(self, symbol: str) -> Tick | None:
        return self._last_tick.get(symbol)

    @property
    def pending(self) -> bool:
        """An update is waiting to be handled."""
        return bool(self._pending)

    def waiting(self, symbol: str) -> bool:
        """``symbol`` has an update waiting to be handled."""
        return symbol in self._pending

    async def wait(self) -> None:
        """Until something is pending."""
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()

    def pop(self) -> Update | None:
        """The symbol that has waited longest, with everything it got; None when idle."""
        if not self._pending:
            return None
        symbol = next(iter(self._pending))
        update = self._pending.pop(symbol)
        self.dropped += update.coalesced
        return update

    def _update(self, symbol: str) -> Update:
        self.updates += 1
        update = self._pending.get(symbol)
        if update is None:
            update = self._pending[symbol] = Update(symbol)
            self._wake.set()
        update.count += 1
        return update
