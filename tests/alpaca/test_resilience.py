"""Circuit breaker, request budget, backoff and retry policy, on a test clock."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from engine.backoff import Backoff, backoff_delay
from engine.broker.resilience import (
    BreakerState,
    CircuitBreaker,
    RequestBudget,
    RetryPolicy,
    retry_call,
)
from engine.clock import TestClock
from engine.errors import BrokerRejected, BrokerUnavailable, CircuitOpen, RateLimited
from tests.alpaca.virtual_time import VirtualTime


def _clock() -> TestClock:
    return TestClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))


class ClockSleep:
    """``sleep`` that moves the test clock instead of waiting, and records each wait."""

    def __init__(self, clock: TestClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


def test_breaker_when_failures_reach_threshold_then_open_and_fast_fail() -> None:
    clock = _clock()
    breaker = CircuitBreaker(failures=3, reset_s=10, monotonic=clock.monotonic)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure("boom")
    assert breaker.state is BreakerState.CLOSED

    breaker.before_call()
    breaker.record_failure("boom")

    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match=r"3 consecutive failures.*boom"):
        breaker.before_call()


def test_breaker_when_reset_time_passes_then_one_probe_and_success_closes() -> None:
    clock = _clock()
    breaker = CircuitBreaker(failures=1, reset_s=10, monotonic=clock.monotonic)
    breaker.before_call()
    breaker.record_failure("down")
    clock.advance(9.9)
    with pytest.raises(CircuitOpen):
        breaker.before_call()

    clock.advance(0.1)
    assert breaker.before_call() is True  # the probe
    with pytest.raises(CircuitOpen, match="probe"):
        breaker.before_call()  # only one probe at a time
    breaker.record_success()

    assert breaker.state is BreakerState.CLOSED
    assert breaker.before_call() is False


def test_breaker_when_probe_fails_then_open_for_another_period() -> None:
    clock = _clock()
    breaker = CircuitBreaker(failures=2, reset_s=5, monotonic=clock.monotonic)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure("down")
    clock.advance(5)
    assert breaker.before_call() is True

    breaker.record_failure("still down")

    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(5.0)
    assert breaker.opened_count == 2  # opened, then re-opened by the failed probe


def test_breaker_when_probe_released_then_next_call_probes() -> None:
    clock = _clock()
    breaker = CircuitBreaker(failures=1, reset_s=1, monotonic=clock.monotonic)
    breaker.before_call()
    breaker.record_failure("down")
    clock.advance(1)
    assert breaker.before_call() is True

    breaker.release_probe()

    assert breaker.before_call() is True


def test_breaker_when_success_between_failures_then_count_restarts() -> None:
    clock = _clock()
    breaker = CircuitBreaker(failures=2, reset_s=1, monotonic=clock.monotonic)
    breaker.record_failure("a")
    breaker.record_success()
    breaker.record_failure("b")

    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 1


async def test_budget_when_window_full_then_waits_until_oldest_start_leaves_it() -> None:
    clock = _clock()
    sleep = ClockSleep(clock)
    budget = RequestBudget(per_minute=3, monotonic=clock.monotonic, sleep=sleep)

    for _ in range(3):
        await budget.acquire()
    clock.advance(10)
    await budget.acquire()

    # Three start at once; the fourth waits until the first is 60 s old.
    assert sleep.waits == pytest.approx([50.0])
    assert clock.monotonic() == pytest.approx(60.0)
    assert budget.granted == 4


async def test_budget_when_calls_keep_coming_then_never_more_than_limit_in_any_minute() -> None:
    clock = _clock()
    sleep = ClockSleep(clock)
    budget = RequestBudget(per_minute=190, monotonic=clock.monotonic, sleep=sleep)
    starts: list[float] = []
    while clock.monotonic() < 180.0:
        await budget.acquire(safety=len(starts) % 10 == 0)
        starts.append(clock.monotonic())
        clock.advance(0.05)  # a caller faster than the limit

    assert starts[169] < 10.0, "a burst of up to the ordinary share goes at once"
    for i, t in enumerate(starts):
        in_window = sum(1 for u in starts[i:] if u < t + 60.0 - 1e-6)  # float tolerance
        assert in_window <= 190  # Alpaca allows 200


async def test_budget_when_ordinary_burst_used_its_share_then_safety_call_starts_at_once() -> None:
    vt = VirtualTime()
    budget = RequestBudget(per_minute=190, monotonic=vt.clock.monotonic, sleep=vt.sleep)
    for _ in range(170):
        await budget.acquire()
    queued = asyncio.get_running_loop().create_task(budget.acquire())  # ordinary: waits
    await vt.settle()

    await asyncio.wait_for(budget.acquire(safety=True), 1)  # nobody moves virtual time

    assert budget.reserve == 20
    assert vt.clock.monotonic() == 0
    assert not queued.done()
    await vt.run_until(60)
    assert queued.done()
    assert (budget.granted, budget.granted_safety) == (172, 1)


async def test_budget_when_reserve_used_up_then_safety_calls_wait_for_the_window() -> None:
    vt = VirtualTime()
    budget = RequestBudget(per_minute=8, monotonic=vt.clock.monotonic, sleep=vt.sleep)
    for _ in range(8):
        await budget.acquire(safety=True)
    waiting = asyncio.get_running_loop().create_task(budget.acquire(safety=True))
    await vt.run_until(59)
    assert not waiting.done()  # never more than the venue's limit, safety or not

    await vt.run_until(60)

    assert waiting.done()
    assert budget.reserve == 2


async def test_budget_when_deferred_then_nothing_starts_before_retry_after() -> None:
    clock = _clock()
    sleep = ClockSleep(clock)
    budget = RequestBudget(per_minute=60, monotonic=clock.monotonic, sleep=sleep)

    budget.defer(3.0)
    await budget.acquire()

    assert clock.monotonic() == pytest.approx(3.0)
    assert budget.available == 59


async def test_budget_when_many_waiters_then_served_in_order() -> None:
    clock = _clock()
    sleep = ClockSleep(clock)
    budget = RequestBudget(per_minute=1, monotonic=clock.monotonic, sleep=sleep, window_s=1.0)
    order: list[int] = []

    async def take(n: int) -> None:
        await budget.acquire()
        order.append(n)

    await asyncio.gather(*(take(n) for n in range(5)))

    assert order == [0, 1, 2, 3, 4]
    assert clock.monotonic() == pytest.approx(4.0)


def test_backoff_when_attempts_grow_then_doubles_up_to_cap_with_jitter() -> None:
    backoff = Backoff(base_s=1, cap_s=8, jitter=0.5, rng=random.Random(7))

    delays = [backoff.next() for _ in range(6)]

    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next() <= 1


def test_backoff_delay_when_no_jitter_then_exact_capped_powers() -> None:
    delays = [backoff_delay(n, base_s=0.2, cap_s=1.0) for n in range(1, 6)]

    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, base_s=1, cap_s=2)


def test_retry_policy_when_retry_after_longer_than_backoff_then_retry_after_wins() -> None:
    policy = RetryPolicy(base_s=0.25, cap_s=4)

    assert policy.delay(1, 3.0, random.Random(1)) == 3.0
    assert policy.delay(3, None, random.Random(1)) <= 1.0


async def test_retry_call_when_unavailable_then_retried_until_success() -> None:
    clock = _clock()
    sleep = ClockSleep(clock)
    attempts: list[int] = []

    async def op(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise BrokerUnavailable("503")
        return "ok"

    result = await retry_call(op, RetryPolicy(attempts=3), sleep=sleep, rng=random.Random(0))

    assert result == "ok"
    assert attempts == [1, 2, 3]
    assert len(sleep.waits) == 2


async def test_retry_call_when_rate_limited_then_waits_retry_after() -> None:
    clock = _clock()
    sleep = ClockSleep(clock)

    async def op(attempt: int) -> int:
        if attempt == 1:
            raise RateLimited("429", retry_after=2.0)
        return attempt

    assert await retry_call(op, RetryPolicy(), sleep=sleep) == 2
    assert sleep.waits == [2.0]


@pytest.mark.parametrize(
    "error",
    [
        BrokerRejected("422"),
        CircuitOpen("open"),
        RateLimited("429", retry_after=120.0),
    ],
)
async def test_retry_call_when_not_retryable_then_raised_at_once(error: Exception) -> None:
    clock = _clock()
    sleep = ClockSleep(clock)
    attempts: list[int] = []

    async def op(attempt: int) -> None:
        attempts.append(attempt)
        raise error

    with pytest.raises(type(error)):
        await retry_call(op, RetryPolicy(max_retry_after_s=30), sleep=sleep)
    assert attempts == [1]
    assert sleep.waits == []


async def test_retry_call_when_attempts_exhausted_then_last_error() -> None:
    clock = _clock()
    sleep = ClockSleep(clock)

    async def op(attempt: int) -> None:
        raise BrokerUnavailable(f"try {attempt}")

    with pytest.raises(BrokerUnavailable, match="try 2"):
        await retry_call(op, RetryPolicy(attempts=2), sleep=sleep)
