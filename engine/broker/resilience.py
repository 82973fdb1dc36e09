"""Broker-agnostic protection around remote calls: a circuit breaker, a request budget with a
lane reserved for safety calls, and a retry policy (waiting ``engine.backoff.backoff_delay``).

Safety calls are what takes risk off: cancelling orders and closing positions always, and
every call made inside ``safety_calls()`` (the flatten marks its confirming reads so). They
never queue behind ordinary traffic: the budget keeps ``reserve`` starts a minute for them,
and they wait only for each other.

Time is injected (``monotonic`` and ``sleep``) so tests drive every wait with a test clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from engine.backoff import backoff_delay
from engine.errors import BrokerUnavailable, CircuitOpen, RateLimited

T = TypeVar("T")
Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Float refills land a hair under a whole token; waiting for that hair would be a busy loop.
_EPSILON = 1e-9


_SAFETY: contextvars.ContextVar[bool] = contextvars.ContextVar("broker_safety", default=False)

SAFETY_RESERVE = 20
"""Starts a minute kept for safety calls (a halt and a flatten need a handful)."""


@contextlib.contextmanager
def safety_calls() -> Iterator[None]:
    """Broker calls made in this block, and in tasks created in it, are safety calls."""
    token = _SAFETY.set(True)
    try:
        yield
    finally:
        _SAFETY.reset(token)


def in_safety_calls() -> bool:
    return _SAFETY.get()


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
    """At most ``per_minute`` calls start in any ``window_s`` (60 s) window: a sliding log of
    start times. A burst goes at once (a flatten's per-symbol fallback needs that), and the
    venue's per-minute limit still holds in every window. Ordinary calls may use all but
    ``reserve`` of it (default ``SAFETY_RESERVE``, at most a quarter); safety calls may use
    all of it and wait in their own line, so a halt after any burst of ordinary calls starts
    at once. ``acquire`` waits for room rather than exceed it; each lane is served in
    arrival order."""

    def __init__(
        self,
        *,
        per_minute: int,
        monotonic: Monotonic,
        sleep: Sleep = asyncio.sleep,
        window_s: float = 60.0,
        reserve: int | None = None,
    ) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be >= 1, got {per_minute}")
        kept = min(SAFETY_RESERVE, per_minute // 4) if reserve is None else reserve
        if not 0 <= kept < per_minute:
            raise ValueError(f"reserve must be within 0..{per_minute - 1}, got {kept}")
        self._limit = per_minute
        self._ordinary_limit = per_minute - kept
        self._window = window_s
        self._starts: deque[float] = deque()
        self._monotonic = monotonic
        self._sleep = sleep
        self._paused_until = 0.0
        self._lanes = {False: asyncio.Lock(), True: asyncio.Lock()}
        self.waited_s = 0.0
        self.granted = 0
        self.granted_safety = 0

    @property
    def reserve(self) -> int:
        return self._limit - self._ordinary_limit

    @property
    def available(self) -> int:
        """Calls that could start right now (safety calls; ordinary ones ``reserve`` fewer)."""
        self._forget(self._monotonic())
        return self._limit - len(self._starts)

    async def acquire(self, *, safety: bool = False) -> None:
        limit = self._limit if safety else self._ordinary_limit
        async with self._lanes[safety]:
            while True:
                now = self._monotonic()
                self._forget(now)
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif len(self._starts) < limit:
                    self._starts.append(now)
                    self.granted += 1
                    self.granted_safety += safety
                    return
                else:
                    # The start that must leave the window before this lane has room.
                    wait = self._starts[len(self._starts) - limit] + self._window - now
                self.waited_s += wait
                await self._sleep(wait)

    def defer(self, seconds: float) -> None:
        """The venue said slow down: no call starts for ``seconds``."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._monotonic() + seconds)

    def _forget(self, now: float) -> None:
        # The tolerance keeps float rounding from leaving a start a hair inside the window
        # after sleeping exactly until it leaves (which would wait ~1e-14 s forever).
        while self._starts and self._starts[0] <= now - self._window + _EPSILON:
            self._starts.popleft()


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
        wait = backoff_delay(attempt, base_s=self.base_s, cap_s=self.cap_s, jitter=1.0, rng=rng)
        return max(wait, retry_after or 0.0)


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
