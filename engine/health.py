"""Health measurements the status command and heartbeat report."""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


class LatencyStats:
    """A rolling window of durations in seconds, with percentiles."""

    def __init__(self, window: int = 2048) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.total = 0.0
        """Sum of every duration ever added (with ``count``: a Prometheus summary)."""
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1
        self.total += seconds
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
    """What the broker's answers say about it, for status, heartbeat and the outage watchdog.

    The outage is dated from the first request that went unanswered (its send time, not the
    moment it timed out), or from an earlier liveness signal (``suspect``: the trade stream
    dropped or a ping went unanswered) when that came after the broker's last answer."""

    ok: bool = True
    last_ok_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    round_trip_s: float | None = None
    consecutive_failures: int = 0
    failures: int = 0
    """Every failure since start (``/metrics``)."""
    down_since_mono: float | None = None
    """Monotonic time the current outage is dated from (None while the broker answers)."""
    last_answer_mono: float | None = None
    """Monotonic time of the broker's last answer, when the caller measures it."""
    suspect_since_mono: float | None = None
    """A liveness signal says the broker may have been gone since then."""
    liveness_changed_mono: float | None = None
    """When the stream last went silent or answered again: the watchdog probes after it."""
    round_trips: LatencyStats = field(default_factory=LatencyStats)

    def success(self, now: datetime, elapsed_s: float, mono: float | None = None) -> None:
        self.ok = True
        self.last_ok_at = now
        self.round_trip_s = elapsed_s
        self.round_trips.add(elapsed_s)
        self.consecutive_failures = 0
        self.down_since_mono = None
        if mono is not None:
            self.last_answer_mono = mono

    def failure(
        self, now: datetime, mono: float, error: str, sent_mono: float | None = None
    ) -> None:
        """A request sent at ``sent_mono`` (default: ``mono``) failed at ``mono``."""
        self.ok = False
        self.last_error = error
        self.last_error_at = now
        self.consecutive_failures += 1
        self.failures += 1
        if self.down_since_mono is None:
            start = mono if sent_mono is None else min(sent_mono, mono)
            suspect = self.suspect_if_current()
            if suspect is not None:
                start = min(start, suspect)
            if self.last_answer_mono is not None:
                start = max(start, self.last_answer_mono)
            self.down_since_mono = start

    def suspect(self, mono: float) -> None:
        """The broker may have been gone since ``mono`` (its stream dropped, a ping went
        unanswered): the watchdog probes at once, and an outage that follows is dated from
        here. The earliest signal since the last answer counts."""
        if self.suspect_if_current() is None:
            self.suspect_since_mono = mono
            self.liveness_changed_mono = mono

    def clear_suspicion(self, mono: float) -> None:
        """The stream answers again: the broker may be back, so the watchdog probes at once."""
        if self.suspect_since_mono is not None:
            self.suspect_since_mono = None
            self.liveness_changed_mono = mono

    def suspect_if_current(self) -> float | None:
        """The suspicion, unless the broker has answered since it arose."""
        since = self.suspect_since_mono
        if since is None or (self.last_answer_mono is not None and since < self.last_answer_mono):
            return None
        return since


HEALTH_FILE = "health.json"


def write_health_file(path: Path, payload: Mapping[str, object]) -> None:
    """Atomically replace the liveness file (called from a worker thread)."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(temp, path)


def check_health_file(path: Path, stale_after_s: float, now: datetime) -> tuple[bool, str]:
    """What ``run_bot.py healthcheck`` reports: healthy only when the engine wrote its
    liveness file recently."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        written = datetime.fromisoformat(str(data["ts"]))
    except FileNotFoundError:
        return False, f"unhealthy: no liveness file at {path} (engine not started yet?)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"unhealthy: unreadable liveness file {path}: {exc}"
    age = (now - written).total_seconds()
    if age > stale_after_s:
        return False, f"unhealthy: engine last alive {age:.0f} s ago (limit {stale_after_s:.0f} s)"
    return True, f"healthy: engine alive {age:.0f} s ago, state {data.get('state', '?')}"
