"""Broker-agnostic protection around remote calls: a circuit breaker, a request budget and a
retry policy with backoff.

Time is injected (``monotonic`` and ``sleep``) so tests drive every wait with a test clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from engine.errors import BrokerUnavailable, CircuitOpen, RateLimited

T = TypeVar("T")
Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Float refills land a hair under a whole token; waiting for that hair would be a busy loop.
_EPSILON = 1e-9


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """``failures`` consecutive failures open the breaker; while open every call fails fast
    with ``CircuitOpen``. After ``reset_s`` one probe call is let through: its success closes
    the breaker, its failure opens it for another ``reset_s``."""

    def __init__(self, *, failures: int, reset_s: float, monotonic: Monotonic) -> None:
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if reset_s <= 0:
            raise ValueError(f"reset_s must be > 0, got {reset_s}")
        self._threshold = failures
        self._reset_s = reset_s
        self._monotonic = monotonic
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self.last_error = ""
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until a probe may go through (0 when calls are allowed)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._reset_s - self._monotonic())

    def before_call(self) -> bool:
        """Admit a call or raise ``CircuitOpen``. Returns True when the call is the probe."""
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.OPEN and self.retry_in() <= 0:
            self._state = BreakerState.HALF_OPEN
            self._probe_out = True
            return True
        if self._state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        wait = self.retry_in()
        when = f"next try in {wait:.0f} s" if wait > 0 else "a probe call is in flight"
        raise CircuitOpen(
            f"broker calls paused after {self._failures} consecutive failures ({when}); "
            f"last error: {self.last_error or 'unknown'}"
        )

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_out = False

    def record_failure(self, error: str) -> None:
        self._failures += 1
        self.last_error = error
        self._probe_out = False
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            if self._state is not BreakerState.OPEN:
                self.opened_count += 1
            self._state = BreakerState.OPEN
            self._opened_at = self._monotonic()

    def release_probe(self) -> None:
        """The probe ended without saying anything about the broker (cancelled, rate
        limited): let the next call probe instead."""
        self._probe_out = False


class RequestBudget:
    """A token bucket: ``per_minute`` tokens a minute, at most ``burst`` saved up.
    ``acquire`` waits for a token instead of exceeding the budget; waiters are served in
    arrival order. In any 60 s window at most ``burst + per_minute`` calls start, so pick
    ``burst`` to keep that under the venue's limit."""

    def __init__(
        self, *, per_minute: int, burst: int, monotonic: Monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be >= 1, got {per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._rate = per_minute / 60.0
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._monotonic = monotonic
        self._sleep = sleep
        self._stamp = monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.waited_s = 0.0
        self.granted = 0

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                self._refill()
                now = self._monotonic()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._tokens >= 1.0 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    self.granted += 1
                    return
                else:
                    wait = (1.0 - self._tokens) / self._rate
                self.waited_s += wait
                await self._sleep(wait)

    def defer(self, seconds: float) -> None:
        """The venue said slow down: no call starts for ``seconds`` and the saved tokens are
        dropped."""
        if seconds <= 0:
            return
        self._refill()
        self._tokens = 0.0
        self._paused_until = max(self._paused_until, self._monotonic() + seconds)

    def _refill(self) -> None:
        now = self._monotonic()
        # Tokens do not accrue during a pause: the venue's window restarts after it.
        start = max(self._stamp, min(now, self._paused_until))
        if now > start:
            self._tokens = min(self._capacity, self._tokens + (now - start) * self._rate)
        self._stamp = now


class Backoff:
    """Exponential delays with jitter: ``base_s * factor**n`` capped at ``cap_s``, each
    reduced by a random part of up to ``jitter`` (0..1) so clients do not retry in step."""

    def __init__(
        self,
        *,
        base_s: float,
        cap_s: float,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be within 0..1")
        self.base_s = base_s
        self.cap_s = cap_s
        self._factor = factor
        self._jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.base_s * self._factor ** min(self.attempts, 64))
        self.attempts += 1
        return ceiling * (1.0 - self._jitter * self._rng.random())

    def reset(self) -> None:
        self.attempts = 0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently an idempotent call is retried."""

    attempts: int = 3
    """Tries in total, the first included."""
    base_s: float = 0.25
    cap_s: float = 4.0
    max_retry_after_s: float = 30.0
    """A Retry-After longer than this is not waited for: the error goes to the caller."""

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before try ``attempt + 1``: full-jitter backoff, never shorter than the
        venue's Retry-After."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt - 1, 64))
        return max(rng.uniform(0.0, ceiling), retry_after or 0.0)


async def retry_call(
    op: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``op(attempt)`` until it succeeds, retrying ``BrokerUnavailable`` failures (not
    ``CircuitOpen``) with backoff. Only for idempotent operations."""
    rng = rng or random.Random()
    attempt = 1
    while True:
        try:
            return await op(attempt)
        except CircuitOpen:
            raise
        except BrokerUnavailable as exc:
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            if attempt >= policy.attempts:
                raise
            if retry_after is not None and retry_after > policy.max_retry_after_s:
                raise
            await sleep(policy.delay(attempt, retry_after, rng))
            attempt += 1
