"""The outage watchdog on a test clock: no real 60 s wait."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.broker.outage import OutageMonitor
from engine.clock import TestClock
from engine.errors import BrokerUnavailable
from engine.health import BrokerHealth


class Halts:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


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
        await monitor.probe_if_due()
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
    await monitor.probe_if_due()
    clock.advance(11)
    await monitor.probe_if_due()

    assert calls == [11]
