"""Market hours from the broker's calendar, answered synchronously on the hot path."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from engine.broker.port import Broker
from engine.clock import Clock, trading_day
from engine.domain import TradingSession


class MarketHours:
    def __init__(self, broker: Broker, clock: Clock) -> None:
        self._broker = broker
        self._clock = clock
        self._sessions: list[TradingSession] = []
        self._loaded_for: date | None = None
        self._open_session: TradingSession | None = None

    async def refresh(self) -> None:
        today = trading_day(self._clock.now())
        self._sessions = await self._broker.get_calendar(
            today - timedelta(days=10), today + timedelta(days=14)
        )
        self._loaded_for = today
        self._open_session = None

    async def ensure_fresh(self) -> None:
        if self._loaded_for != trading_day(self._clock.now()):
            await self.refresh()

    def is_open(self, ts: datetime) -> bool:
        """Asked on every order: the session found last is tried first."""
        found = self._open_session
        if found is not None and found.open <= ts < found.close:
            return True
        for session in self._sessions:
            if session.open <= ts < session.close:
                self._open_session = session
                return True
        return False

    def session(self, day: date) -> TradingSession | None:
        return next((s for s in self._sessions if s.day == day), None)

    def next_open(self, ts: datetime) -> datetime | None:
        return next((s.open for s in self._sessions if s.open > ts), None)

    @property
    def sessions(self) -> list[TradingSession]:
        return list(self._sessions)
