"""The call path every Alpaca REST request takes: off the event loop, bounded, measured.

Every call runs on a small dedicated thread pool (not ``asyncio.to_thread``: the loop's
default executor also resolves host names for the WebSocket clients, and hung broker calls
must not starve it). Each pool thread has its own ``TradingClient`` (a ``requests.Session``
is not guaranteed thread-safe), whose session carries a real socket timeout, so a thread
stuck on a dead connection is freed after ``ALPACA_REQUEST_TIMEOUT_S``; on top of that every
call has an ``asyncio.wait_for`` hard limit of the same length, so the loop never waits
longer whatever the thread does. alpaca-py's own retry (three blocking 3 s sleeps on
429/504, POSTs included) is switched off: our ``RetryPolicy`` decides, honouring
Retry-After, and only for idempotent calls.

Around each call: the circuit breaker (fail fast while Alpaca is down), the request budget
(a sliding window under Alpaca's 200 requests a minute; it waits, it never exceeds), then
the call. Safety calls (``engine.broker.resilience.safety_calls``: cancels, closes, the
flatten's reads) have their own lane in the budget and their own threads, so they never
wait behind ordinary requests, hung ones included. Outcomes land in ``health``
(``engine.health.BrokerHealth``), which status, heartbeat and the outage watchdog read.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from alpaca.trading.client import TradingClient

from engine.broker.alpaca.rest import guarded
from engine.broker.resilience import (
    CircuitBreaker,
    RequestBudget,
    RetryPolicy,
    Sleep,
    in_safety_calls,
    retry_call,
)
from engine.clock import Clock
from engine.errors import (
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    CircuitOpen,
    OrderNotFound,
    RateLimited,
)
from engine.health import BrokerHealth

T = TypeVar("T")
ClientCall = Callable[[TradingClient], T]

MAX_WORKERS = 8
SAFETY_WORKERS = 2


class RestCalls:
    """Runs ``fn(client)`` for the adapter: breaker, budget, pool thread, hard timeout."""

    def __init__(
        self,
        *,
        client_factory: Callable[[], TradingClient],
        clock: Clock,
        timeout_s: float,
        breaker: CircuitBreaker,
        budget: RequestBudget,
        retry: RetryPolicy | None = None,
        max_workers: int = MAX_WORKERS,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        health: BrokerHealth | None = None,
    ) -> None:
        self._factory = client_factory
        self._clock = clock
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.budget = budget
        self._retry = retry or RetryPolicy()
        self._max_workers = max_workers
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.health = health if health is not None else BrokerHealth()
        self._pools: dict[bool, ThreadPoolExecutor] = {}
        self._local = threading.local()
        self._clients: list[TradingClient] = []
        self._clients_lock = threading.Lock()
        self.in_flight = 0
        self.timeouts = 0

    def open(self) -> None:
        self._ensure_pool(False)
        self._ensure_pool(True)

    def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            # Threads stuck in a request end by their socket timeout; nobody waits for them.
            pool.shutdown(wait=False, cancel_futures=True)
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client._session.close()

    async def get(self, label: str, fn: ClientCall[T], *, safety: bool = False) -> T:
        """An idempotent call: retried by the policy."""
        return await self.retrying(lambda _: self.call(label, fn, safety=safety))

    async def retrying(self, op: Callable[[int], Awaitable[T]]) -> T:
        return await retry_call(op, self._retry, sleep=self._sleep, rng=self._rng)

    async def call(self, label: str, fn: ClientCall[T], *, safety: bool = False) -> T:
        """One attempt: breaker, budget, then the request on the pool with a hard timeout.
        ``safety`` (or a call inside ``safety_calls()``) takes the safety lane."""
        safety = safety or in_safety_calls()
        try:
            probe = self.breaker.before_call()
        except CircuitOpen as exc:
            # The health keeps the broker's own last error, not the breaker's sentence
            # wrapping it: the outage halt reason and !status quote it once.
            error = self.breaker.last_error or str(exc)
            self.health.failure(self._clock.now(), self._clock.monotonic(), error)
            raise
        started = self._clock.monotonic()
        outcome = "neutral"
        try:
            await self.budget.acquire(safety=safety)
            started = self._clock.monotonic()
            result = await self._run(label, fn, safety)
            outcome = "ok"
            return result
        except (BrokerRejected, OrderNotFound):
            outcome = "ok"  # Alpaca answered: it is up, the request was wrong
            raise
        except RateLimited as exc:
            self.budget.defer(exc.retry_after if exc.retry_after is not None else 1.0)
            self.health.last_error = str(exc)
            self.health.last_error_at = self._clock.now()
            raise
        except BrokerError as exc:
            outcome = "failed"
            if isinstance(exc, BrokerTimeout):
                self.timeouts += 1  # the socket timeout or the hard limit, whichever came first
            self.breaker.record_failure(str(exc))
            self.health.failure(
                self._clock.now(), self._clock.monotonic(), str(exc), sent_mono=started
            )
            raise
        finally:
            if outcome == "ok":
                self.breaker.record_success()
                mono = self._clock.monotonic()
                self.health.success(self._clock.now(), mono - started, mono=mono)
            elif outcome == "neutral" and probe:
                self.breaker.release_probe()

    async def _run(self, label: str, fn: ClientCall[T], safety: bool) -> T:
        pool = self._ensure_pool(safety)
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(pool, self._in_thread, label, fn), self.timeout_s
            )
        except TimeoutError:
            raise BrokerTimeout(
                f"Alpaca did not answer {label} within {self.timeout_s:g} s"
            ) from None
        finally:
            self.in_flight -= 1

    def _in_thread(self, label: str, fn: ClientCall[T]) -> T:
        client = self._thread_client()
        return guarded(label, self.timeout_s, lambda: fn(client))

    def _thread_client(self) -> TradingClient:
        client: TradingClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._factory()
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _ensure_pool(self, safety: bool = False) -> ThreadPoolExecutor:
        pool = self._pools.get(safety)
        if pool is None:
            pool = self._pools[safety] = ThreadPoolExecutor(
                max_workers=SAFETY_WORKERS if safety else self._max_workers,
                thread_name_prefix="alpaca-safety" if safety else "alpaca-rest",
            )
        return pool
