"""The outage watchdog on a test clock: no real 60 s wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from engine.broker.outage import OutageMonitor
from engine.clock import TestClock
from engine.errors import BrokerTimeout, BrokerUnavailable
from engine.health import BrokerHealth
from tests.alpaca.virtual_time import VirtualTime


class Halts:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


async def probe_now(monitor: OutageMonitor) -> None:
    """Run the probe to its end when the monitor starts one."""
    task = monitor.probe_if_due()
    if task is not None:
        await task


def _setup(halt_after_s: float = 60.0) -> tuple[TestClock, BrokerHealth, Halts, OutageMonitor]:
    clock = TestClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))
    health = BrokerHealth()
    halts = Halts()
    monitor = OutageMonitor(health, clock, halt_after_s=halt_after_s, halt=halts)
    return clock, health, halts, monitor


async def test_check_when_down_longer_than_limit_then_halts_once() -> None:
    clock, health, halts, monitor = _setup()
    health.failure(clock.now(), clock.monotonic(), "connection refused")
    clock.advance(60)
    assert await monitor.check() is False  # exactly the limit is not yet "more than"

    clock.advance(0.5)
    assert await monitor.check() is True
    clock.advance(30)
    assert await monitor.check() is False

    assert len(halts.reasons) == 1
    assert "unreachable for 60 s" in halts.reasons[0]
    assert "connection refused" in halts.reasons[0]


async def test_check_when_broker_recovers_in_time_then_no_halt() -> None:
    clock, health, halts, monitor = _setup()
    health.failure(clock.now(), clock.monotonic(), "timeout")
    clock.advance(59)
    health.success(clock.now(), 0.05)
    clock.advance(120)

    assert await monitor.check() is False
    assert halts.reasons == []
    assert monitor.down_for_s() is None


async def test_check_when_second_outage_after_recovery_then_halts_again() -> None:
    clock, health, halts, monitor = _setup(halt_after_s=10)
    health.failure(clock.now(), clock.monotonic(), "first")
    clock.advance(11)
    await monitor.check()
    health.success(clock.now(), 0.01)
    await monitor.check()
    health.failure(clock.now(), clock.monotonic(), "second")
    clock.advance(11)

    await monitor.check()

    assert [("first" in r, "second" in r) for r in halts.reasons] == [(True, False), (False, True)]


async def test_probe_when_down_then_called_at_most_every_interval() -> None:
    clock, health, _, _ = _setup()
    calls: list[float] = []

    async def probe() -> None:
        calls.append(clock.monotonic())
        health.failure(clock.now(), clock.monotonic(), "still down")
        raise BrokerUnavailable("still down")

    monitor = OutageMonitor(
        health, clock, halt_after_s=60, halt=Halts(), probe=probe, probe_every_s=5
    )
    health.failure(clock.now(), clock.monotonic(), "down")
    for _ in range(12):
        await probe_now(monitor)
        clock.advance(1)

    assert calls == [0, 5, 10]


async def test_probe_when_healthy_and_recently_used_then_not_called() -> None:
    clock, health, _, _ = _setup()
    calls: list[float] = []

    async def probe() -> None:
        calls.append(clock.monotonic())

    monitor = OutageMonitor(
        health, clock, halt_after_s=60, halt=Halts(), probe=probe, probe_every_s=10
    )
    health.success(clock.now(), 0.02)
    await probe_now(monitor)
    clock.advance(11)
    await probe_now(monitor)

    assert calls == [11]


def test_failure_when_request_timed_out_then_outage_dated_from_its_send() -> None:
    clock, health, _, monitor = _setup()
    sent = clock.monotonic()
    clock.advance(10)  # the request timed out after 10 s
    health.failure(clock.now(), clock.monotonic(), "timeout", sent_mono=sent)

    assert health.ok is False  # unhealthy from the first timeout
    assert health.down_since_mono == sent
    assert monitor.down_for_s() == 10


def test_failure_when_broker_answered_after_send_then_dated_from_that_answer() -> None:
    clock, health, _, _ = _setup()
    sent = clock.monotonic()
    clock.advance(2)
    health.success(clock.now(), 0.05, mono=clock.monotonic())  # a later call got through
    answered = clock.monotonic()
    clock.advance(8)
    health.failure(clock.now(), clock.monotonic(), "timeout", sent_mono=sent)

    assert health.down_since_mono == answered


def test_failure_when_stream_went_silent_first_then_dated_from_the_silence() -> None:
    clock, health, _, _ = _setup()
    health.success(clock.now(), 0.05, mono=clock.monotonic())
    clock.advance(1)
    silent = clock.monotonic()
    health.suspect(silent)  # a ping went unanswered
    clock.advance(1)
    probe_sent = clock.monotonic()
    clock.advance(10)
    health.failure(clock.now(), clock.monotonic(), "timeout", sent_mono=probe_sent)

    assert health.down_since_mono == silent


def test_failure_when_suspicion_older_than_last_answer_then_ignored() -> None:
    clock, health, _, _ = _setup()
    health.suspect(clock.monotonic())  # the stream dropped, but REST kept answering
    clock.advance(5)
    health.success(clock.now(), 0.05, mono=clock.monotonic())
    clock.advance(20)
    sent = clock.monotonic()
    clock.advance(10)
    health.failure(clock.now(), clock.monotonic(), "timeout", sent_mono=sent)

    assert health.down_since_mono == sent


async def test_probe_when_suspect_then_started_at_once_despite_recent_answer() -> None:
    clock, health, _, _ = _setup()
    calls: list[float] = []

    async def probe() -> None:
        calls.append(clock.monotonic())
        health.success(clock.now(), 0.01, mono=clock.monotonic())

    monitor = OutageMonitor(
        health, clock, halt_after_s=60, halt=Halts(), probe=probe, probe_every_s=10
    )
    health.success(clock.now(), 0.02, mono=clock.monotonic())
    assert monitor.probe_if_due() is None  # healthy and just used: no probe
    clock.advance(1)
    health.suspect(clock.monotonic())  # the trade stream dropped
    task = monitor.probe_if_due()
    assert task is not None
    await task
    clock.advance(1)

    assert monitor.probe_if_due() is None  # answered since the suspicion
    assert calls == [1]


class HungBroker:
    """A probe as the adapter makes it against a hung broker: three attempts, each failing
    after a 10 s timeout and dated from its own send."""

    def __init__(self, vt: VirtualTime, health: BrokerHealth) -> None:
        self._vt = vt
        self._health = health
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1
        clock = self._vt.clock
        for _ in range(3):
            sent = clock.monotonic()
            await self._vt.sleep(10)
            self._health.failure(clock.now(), clock.monotonic(), "timed out", sent_mono=sent)
        raise BrokerTimeout("Alpaca did not answer clock within 10 s")


async def test_run_when_broker_hangs_then_halt_within_limit_plus_one_second() -> None:
    vt = VirtualTime()
    clock = vt.clock
    health = BrokerHealth()
    broker = HungBroker(vt, health)
    halted_at: list[float] = []

    async def halt(reason: str) -> None:
        halted_at.append(clock.monotonic())

    monitor = OutageMonitor(
        health, clock, halt_after_s=60, halt=halt, probe=broker.probe, sleep=vt.sleep
    )
    runner = asyncio.get_running_loop().create_task(monitor.run())
    try:
        await vt.run_until(120)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    # The idle watchdog's first probe went out at 0 and never got an answer.
    assert len(halted_at) == 1
    assert 60 < halted_at[0] <= 61
    assert broker.probes >= 2  # later probes were started meanwhile, none was waited for


async def test_run_when_probe_never_returns_then_checks_go_on() -> None:
    vt = VirtualTime()
    clock = vt.clock
    health = BrokerHealth()
    forever = asyncio.Event()
    halted_at: list[float] = []

    async def probe() -> None:
        await forever.wait()

    async def halt(reason: str) -> None:
        halted_at.append(clock.monotonic())

    monitor = OutageMonitor(health, clock, halt_after_s=60, halt=halt, probe=probe, sleep=vt.sleep)
    runner = asyncio.get_running_loop().create_task(monitor.run())
    try:
        await vt.run_until(5)
        # Another caller's request, sent at 5, timed out at 15.
        await vt.run_until(15)
        health.failure(clock.now(), clock.monotonic(), "timed out", sent_mono=5)
        await vt.run_until(100)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    assert len(halted_at) == 1
    assert 65 < halted_at[0] <= 66


async def test_check_when_broker_back_after_outage_then_on_recovered_with_reason() -> None:
    clock, health, halts, _ = _setup(halt_after_s=10)
    reasons: list[str] = []

    async def recovered(reason: str) -> None:
        reasons.append(reason)

    monitor = OutageMonitor(
        health, clock, halt_after_s=10, halt=halts, on_recovered=recovered, reconcile_after_s=2
    )
    health.failure(clock.now(), clock.monotonic(), "refused")
    clock.advance(1)
    await monitor.check()
    health.success(clock.now(), 0.01, mono=clock.monotonic())
    await monitor.check()  # a 1 s blip: nothing to reconcile
    health.failure(clock.now(), clock.monotonic(), "refused")
    clock.advance(12)
    await monitor.check()
    health.success(clock.now(), 0.01, mono=clock.monotonic())
    await monitor.check()
    await asyncio.sleep(0)

    assert len(halts.reasons) == 1
    assert reasons == ["broker back after an outage of 12 s"]
    assert monitor.recoveries == 1


async def test_probe_when_stream_answers_again_during_outage_then_started_at_once() -> None:
    clock, health, _, _ = _setup()
    calls: list[float] = []

    async def probe() -> None:
        calls.append(clock.monotonic())

    monitor = OutageMonitor(
        health, clock, halt_after_s=60, halt=Halts(), probe=probe, probe_every_s=10
    )
    health.failure(clock.now(), clock.monotonic(), "timed out")
    await probe_now(monitor)  # down: probed at 0
    clock.advance(2)
    await probe_now(monitor)  # down, but probed 2 s ago: not yet
    health.suspect(clock.monotonic())
    await probe_now(monitor)  # the stream went silent: probe at 2
    clock.advance(1)
    health.clear_suspicion(clock.monotonic())  # a pong: the broker may be back
    await probe_now(monitor)
    await probe_now(monitor)

    assert calls == [0, 2, 3]
