"""Health measurements the status command and heartbeat report."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime


class LatencyStats:
    """A rolling window of durations in seconds, with percentiles."""

    def __init__(self, window: int = 2048) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1
        self.max = max(self.max, seconds)

    def percentile(self, pct: float) -> float | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def last(self) -> float | None:
        return self._samples[-1] if self._samples else None


@dataclass
class BrokerHealth:
    ok: bool = True
    last_ok_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    round_trip_s: float | None = None
    consecutive_failures: int = 0
    down_since_mono: float | None = None
    """Monotonic time of the first failure in the current run of failures."""
    round_trips: LatencyStats = field(default_factory=LatencyStats)

    def success(self, now: datetime, elapsed_s: float) -> None:
        self.ok = True
        self.last_ok_at = now
        self.round_trip_s = elapsed_s
        self.round_trips.add(elapsed_s)
        self.consecutive_failures = 0
        self.down_since_mono = None

    def failure(self, now: datetime, mono: float, error: str) -> None:
        self.ok = False
        self.last_error = error
        self.last_error_at = now
        self.consecutive_failures += 1
        if self.down_since_mono is None:
            self.down_since_mono = mono
