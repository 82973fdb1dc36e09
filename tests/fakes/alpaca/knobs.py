"""Fault knobs, mutable while the server runs, and the deterministic decisions they drive."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field

MALFORMED_KINDS = ("invalid_json", "not_an_array", "missing_fields", "non_numeric")


@dataclass
class Knobs:
    """Faults the fake injects; everything defaults to off.

    REST: ``latency_ms`` delays every request; ``error_rate`` (0..1) answers that fraction
    with 500 (deterministic for a given ``seed``); ``rate_limit_next`` answers the next N
    requests 429 with ``X-RateLimit-Reset`` ``retry_after_s`` from now and, unless
    ``send_retry_after`` is off (Alpaca itself sends only the ``X-RateLimit-*`` headers), a
    ``Retry-After: retry_after_s``; ``hang_next`` leaves the next N requests whose path
    starts with ``hang_path_prefix`` unanswered until the client gives up or the server
    stops; ``refuse_close`` symbols are refused (403) by the close-position endpoints;
    ``refuse_cancel`` symbols' orders are not cancelable (single cancel 422, cancel-all
    item status 500, the order stays open); ``untradable`` symbols are refused everywhere
    (orders 422 "asset ... is not tradable", closes 403), like a halted or delisted asset;
    ``rate_limit_per_min`` > 0 enforces a per-minute budget with 429s as Alpaca does
    (200/min there).

    Streams: ``auth_fail`` fails stream authentication (data: error 402; trade updates:
    ``unauthorized``); ``connection_limit`` answers data-stream auth with error 406;
    ``malformed_data_frames`` replaces the next N market-data sends (bars and trades) with
    malformed frames, cycling through invalid JSON, a non-array, a bar missing fields and a
    bar with non-numeric fields; ``symbol_limit`` > 0 answers bigger subscriptions with 405;
    ``insufficient_subscription`` answers auth on ``/v2/sip`` with 409; a data-stream
    client that has not authenticated within ``auth_timeout_s`` gets 404 and is closed.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_next: int = 0
    retry_after_s: int = 1
    send_retry_after: bool = True
    hang_next: int = 0
    hang_path_prefix: str = ""
    malformed_data_frames: int = 0
    refuse_close: set[str] = field(default_factory=set)
    refuse_cancel: set[str] = field(default_factory=set)
    untradable: set[str] = field(default_factory=set)
    auth_fail: bool = False
    connection_limit: bool = False
    seed: int = 0
    rate_limit_per_min: int = 0
    symbol_limit: int = 0
    insufficient_subscription: bool = False
    auth_timeout_s: float = 10.0


class FaultPlan:
    """Turns the knobs into per-request and per-frame decisions."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self._rng = random.Random(knobs.seed)
        self._rng_seed = knobs.seed
        self._recent: deque[float] = deque()
        self._malformed_sent = 0
        self.thawed = asyncio.Event()
        """Cleared while the fake is frozen (``FakeAlpaca.freeze``): nothing is answered."""
        self.thawed.set()

    async def until_thawed(self) -> None:
        await self.thawed.wait()

    def take_hang(self, path: str) -> bool:
        knobs = self.knobs
        if knobs.hang_next > 0 and path.startswith(knobs.hang_path_prefix):
            knobs.hang_next -= 1
            return True
        return False

    def take_rate_limit(self) -> float | None:
        """Seconds until the quota has room again when this request must get a 429 (the
        ``rate_limit_next`` knob or the per-minute budget), else None; every request counts
        towards the budget."""
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= 60.0:
            self._recent.popleft()
        self._recent.append(now)
        if self.knobs.rate_limit_next > 0:
            self.knobs.rate_limit_next -= 1
            return float(self.knobs.retry_after_s)
        limit = self.knobs.rate_limit_per_min
        if limit > 0 and len(self._recent) > limit:
            return self._recent[len(self._recent) - limit] + 60.0 - now
        return None

    def reset_in_s(self) -> float:
        """Seconds until the per-minute window has room again (the oldest request leaves)."""
        limit = self.knobs.rate_limit_per_min or 200
        if len(self._recent) < limit:
            return 0.0
        return max(0.0, self._recent[len(self._recent) - limit] + 60.0 - time.monotonic())

    def remaining(self) -> int:
        limit = self.knobs.rate_limit_per_min or 200
        return max(0, limit - len(self._recent))

    def roll_error(self) -> bool:
        if self.knobs.seed != self._rng_seed:
            self._rng = random.Random(self.knobs.seed)
            self._rng_seed = self.knobs.seed
        # One draw per authenticated request that got this far, whatever the rate, so the
        # outcome sequence depends only on the seed and the number of requests.
        draw = self._rng.random()
        return draw < self.knobs.error_rate

    def take_malformed(self) -> str | None:
        """The kind of malformed frame to send instead of the next data frame, if any."""
        if self.knobs.malformed_data_frames <= 0:
            return None
        self.knobs.malformed_data_frames -= 1
        kind = MALFORMED_KINDS[self._malformed_sent % len(MALFORMED_KINDS)]
        self._malformed_sent += 1
        return kind
