"""The alert router: routing, fallback, mentions, coalescing, dropping, outages, failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bot.alerts import (
    MAX_MERGED_LINES,
    AlertRouter,
    ConsoleTransport,
    SendUnavailable,
    mention_for,
)
from bot.messages import AlertMessage, Channel, describe
from config.settings import ChannelSettings
from engine.bus import EventBus
from engine.clock import TestClock
from engine.domain import Fill, OrderStatus, Side, TradingState
from engine.events import (
    FillReceived,
    Notice,
    OrderUpdated,
    RiskRejected,
    Severity,
    TradingStateChanged,
)
from engine.risk.state import TradingStateController
from tests.support.app import wait_for

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


class FakeTransport:
    """Records what it was asked to send; can be down, miss channels, or fail sends."""

    name = "fake"

    def __init__(self, channels: set[Channel] | None = None, ready: bool = True) -> None:
        self.ready = ready
        self.channels = set(Channel) if channels is None else channels
        self.sent: list[tuple[Channel, AlertMessage, str | None]] = []
        self.fail_next = 0
        self.unreachable_next = 0
        self.attempts = 0
        self.nonces: list[str] = []

    def is_ready(self) -> bool:
        return self.ready

    def has_channel(self, channel: Channel) -> bool:
        return channel in self.channels

    async def send(
        self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str = ""
    ) -> None:
        self.attempts += 1
        self.nonces.append(nonce)
        if self.unreachable_next:
            self.unreachable_next -= 1
            raise SendUnavailable("TimeoutError: no answer from Discord")
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("503 from Discord")
        self.sent.append((channel, message, mention))

    @property
    def texts(self) -> list[str]:
        return [m.text for _, m, _ in self.sent]


class FakeSleep:
    """Moves the test clock instead of waiting; yields so other tasks run."""

    def __init__(self, clock: TestClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


class MemoryStateStore:
    async def record_trading_state(self, *args: Any) -> None:
        return None


def channels(**ids: int) -> ChannelSettings:
    return ChannelSettings(_env_file=None, **ids)  # type: ignore[call-arg]


def make_router(
    transport: FakeTransport, settings: ChannelSettings | None = None, **options: Any
) -> tuple[AlertRouter, EventBus, TestClock, FakeSleep]:
    bus = EventBus()
    clock = TestClock(T0)
    sleep = FakeSleep(clock)
    router = AlertRouter(
        bus, transport, settings or channels(), clock=clock, sleep=sleep, **options
    )
    return router, bus, clock, sleep


def msg(kind: str, severity: Severity = Severity.INFO, channel: Channel = Channel.SYSTEM_ALERTS):
    return AlertMessage(channel, severity, f"{kind} text", kind)


def rejected(i: int = 0) -> OrderUpdated:
    return OrderUpdated(
        ts=T0,
        client_order_id=f"cid-{i}",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(10),
        status=OrderStatus.REJECTED,
        filled_qty=Decimal(0),
        reason="insufficient buying power",
    )


async def test_route_when_events_of_each_kind_then_each_lands_in_its_channel() -> None:
    transport = FakeTransport()
    router, bus, _, _ = make_router(transport)
    await router.start()
    fill = Fill("x1", "c1", "b1", "AAPL", Side.BUY, Decimal(10), Decimal("231.97"), T0)
    try:
        bus.publish(
            FillReceived(ts=T0, fill=fill, position_qty=Decimal(10), realized_pnl=Decimal(0))
        )
        bus.publish(
            TradingStateChanged(
                ts=T0, old=TradingState.ACTIVE, new=TradingState.HALTED, actor="bob", reason="x"
            )
        )
        bus.publish(Notice(ts=T0, kind="heartbeat", title="", text="beat"))
        bus.publish(Notice(ts=T0, kind="end-of-day", title="", text="eod"))
        await wait_for(lambda: len(transport.sent) == 4)
    finally:
        await router.stop()

    assert [(c, m.kind) for c, m, _ in transport.sent] == [
        (Channel.TRADES, "fill"),
        (Channel.SYSTEM_ALERTS, "state"),
        (Channel.HEARTBEAT, "heartbeat"),
        (Channel.REPORTS, "end-of-day"),
    ]
    assert transport.sent[0][1].text.startswith("✅ Bought 10 AAPL @ $231.97")


async def test_route_when_channel_missing_then_system_alerts_with_one_warning() -> None:
    transport = FakeTransport(channels={Channel.SYSTEM_ALERTS})
    router, _, clock, _ = make_router(transport)
    router.publish(msg("fill", channel=Channel.TRADES))
    clock.advance(5)  # outside the coalescing window: two separate messages
    router.publish(msg("fill", channel=Channel.TRADES))
    router.publish(msg("end-of-day", channel=Channel.REPORTS))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 5)
    await router.stop()

    assert {c for c, _, _ in transport.sent} == {Channel.SYSTEM_ALERTS}
    assert [m.kind for _, m, _ in transport.sent] == [
        "channel-fallback",
        "fill",
        "fill",
        "channel-fallback",
        "end-of-day",
    ]
    assert "#trades" in transport.sent[0][1].text
    assert "#reports" in transport.sent[3][1].text


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"critical_mention_role_id": 123, "critical_mention_user_id": 456}, "<@&123>"),
        ({"critical_mention_user_id": 456}, "<@456>"),
        ({}, None),
    ],
)
def test_mention_when_critical_then_role_else_user(ids: dict[str, int], expected: str | None):
    settings = channels(**ids)

    assert mention_for(msg("halt", Severity.CRITICAL), settings) == expected
    assert mention_for(msg("warn", Severity.WARNING), settings) is None
    assert mention_for(msg("info", Severity.INFO), settings) is None


async def test_deliver_when_mixed_severities_then_only_critical_mentions() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport, channels(critical_mention_role_id=123))
    router.publish(msg("a", Severity.INFO))
    router.publish(msg("b", Severity.WARNING))
    router.publish(msg("c", Severity.CRITICAL))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 3)
    await router.stop()

    assert [(m.kind, mention) for _, m, mention in transport.sent] == [
        ("a", None),
        ("b", None),
        ("c", "<@&123>"),
    ]


async def test_coalesce_when_fifty_rejects_in_a_burst_then_one_message_per_channel() -> None:
    transport = FakeTransport()
    router, bus, _, _ = make_router(transport)
    await router.start()
    for i in range(50):
        bus.publish(rejected(i))
    await wait_for(lambda: len(transport.sent) == 2)
    await router.stop()

    first = "❌ Broker rejected buy 10 AAPL: insufficient buying power"
    assert transport.sent[0][0] is Channel.TRADES
    assert transport.sent[0][1].text == f"50 × {first}"
    assert transport.sent[1][0] is Channel.SYSTEM_ALERTS
    assert transport.sent[1][1].text == f"50 × {first}"
    assert router.stats.coalesced == 98
    assert router.stats.sent == 2


async def test_coalesce_when_burst_of_different_fills_then_every_fill_keeps_its_line() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport)
    fills = [f"✅ Bought 10 {sym} @ 100.00" for sym in ("AAPL", "MSFT", "SPY")]
    for text in [*fills, fills[0]]:
        router.publish(AlertMessage(Channel.TRADES, Severity.INFO, text, "fill"))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 1)
    await router.stop()

    assert transport.texts == [
        "2 × ✅ Bought 10 AAPL @ 100.00\n✅ Bought 10 MSFT @ 100.00\n✅ Bought 10 SPY @ 100.00"
    ]


async def test_coalesce_when_more_distinct_texts_than_lines_then_rest_counted() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport)
    for i in range(MAX_MERGED_LINES + 5):
        router.publish(AlertMessage(Channel.TRADES, Severity.INFO, f"order {i}", "order"))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 1)
    await router.stop()

    lines = transport.texts[0].splitlines()
    assert lines[:2] == ["order 0", "order 1"]
    assert len(lines) == MAX_MERGED_LINES + 1
    assert lines[-1] == "…and 5 more"


async def test_coalesce_when_critical_burst_then_every_critical_is_sent() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport)
    for _ in range(3):
        router.publish(msg("halt", Severity.CRITICAL))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 3)
    await router.stop()

    assert transport.texts == ["halt text"] * 3
    assert router.stats.coalesced == 0


async def test_coalesce_when_same_kind_outside_window_then_separate_messages() -> None:
    transport = FakeTransport()
    router, _, clock, _ = make_router(transport, coalesce_window_s=1.0)
    router.publish(msg("fill"))
    clock.advance(1.5)
    router.publish(msg("fill"))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 2)
    await router.stop()

    assert transport.texts == ["fill text", "fill text"]


async def test_queue_when_full_then_low_dropped_and_counted_and_critical_kept() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport, queue_size=5)
    for i in range(8):
        router.publish(msg(f"k{i}"))  # k5..k7 find no room
    router.publish(msg("crit1", Severity.CRITICAL))  # evicts k0
    router.publish(msg("crit2", Severity.CRITICAL))  # evicts k1
    await router.start()
    await wait_for(lambda: len(transport.sent) == 6)
    await router.stop()

    assert [m.kind for _, m, _ in transport.sent] == [
        "k2",
        "k3",
        "k4",
        "crit1",
        "crit2",
        "alerts-dropped",
    ]
    assert dict(router.stats.dropped) == {"k0": 1, "k1": 1, "k5": 1, "k6": 1, "k7": 1}
    summary_channel, summary, _ = transport.sent[-1]
    assert summary_channel is Channel.SYSTEM_ALERTS
    assert summary.text.startswith("⚠️ 5 low-priority alerts dropped")


async def test_queue_when_full_of_criticals_then_more_criticals_still_kept() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport, queue_size=2)
    for i in range(4):
        router.publish(msg(f"c{i}", Severity.CRITICAL))
    router.publish(msg("info"))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 5)
    await router.stop()

    assert [m.kind for _, m, _ in transport.sent] == ["c0", "c1", "c2", "c3", "alerts-dropped"]
    assert dict(router.stats.dropped) == {"info": 1}


async def test_queue_when_full_then_warning_evicts_oldest_info() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport, queue_size=2)
    router.publish(msg("w0", Severity.WARNING))
    router.publish(msg("i0"))
    router.publish(msg("w1", Severity.WARNING))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 3)
    await router.stop()

    assert [m.kind for _, m, _ in transport.sent] == ["w0", "w1", "alerts-dropped"]


async def test_outage_when_transport_down_then_kept_and_delivered_in_order_after_reconnect():
    transport = FakeTransport(ready=False)
    router, _, _, sleep = make_router(transport, queue_size=3, outage_buffer=20)
    await router.start()
    for i in range(10):
        router.publish(msg(f"m{i}"))
    await wait_for(lambda: len(sleep.calls) >= 5)  # the sender polled a few times
    assert transport.sent == []

    transport.ready = True
    await wait_for(lambda: len(transport.sent) == 10)
    await router.stop()

    assert [m.kind for _, m, _ in transport.sent] == [f"m{i}" for i in range(10)]
    assert router.stats.dropped_total == 0


async def test_outage_when_longer_than_buffer_then_oldest_low_dropped_and_reported() -> None:
    transport = FakeTransport(ready=False)
    router, _, _, sleep = make_router(transport, queue_size=2, outage_buffer=4)
    await router.start()
    router.publish(msg("m0"))
    await wait_for(lambda: len(sleep.calls) >= 2)  # the sender is holding it, still queued
    for i in range(1, 6):
        router.publish(msg(f"m{i}"))
    router.publish(msg("crit", Severity.CRITICAL))  # evicts m0
    transport.ready = True
    await wait_for(lambda: len(transport.sent) == 5)
    await router.stop()

    assert [m.kind for _, m, _ in transport.sent] == ["m1", "m2", "m3", "crit", "alerts-dropped"]
    assert transport.sent[-1][1].text.startswith("⚠️ 3 low-priority")


async def test_send_when_failing_then_engine_unaffected_and_retried_with_backoff() -> None:
    transport = FakeTransport()
    transport.fail_next = 2
    router, bus, clock, sleep = make_router(transport, retry_base_s=1.0)
    await router.start()
    state = TradingStateController(bus, clock, MemoryStateStore())

    record = await state.halt("trader", "going fishing")  # "engine" code publishing on the bus

    await wait_for(lambda: len(transport.sent) == 1)
    await router.stop()
    assert record.state is TradingState.HALTED
    assert bus.handler_errors == 0
    assert transport.attempts == 3
    assert router.stats.retried == 2
    assert [c for c in sleep.calls if c >= 1.0][:2] == [1.0, 2.0]
    assert transport.sent[0][1].text.startswith("🔴 HALTED (was ACTIVE) by trader")


async def test_send_when_failing_every_time_then_given_up_next_delivered_and_loss_reported():
    transport = FakeTransport()
    transport.fail_next = 5
    router, _, _, _ = make_router(transport)
    router.publish(msg("doomed"))
    router.publish(msg("next"))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 2)
    await router.stop()

    assert router.stats.failed == 1
    assert transport.texts == ["next text", "⚠️ 1 alert could not be posted (see the log)."]


async def test_publish_when_transport_hangs_then_bus_publish_returns_at_once() -> None:
    release = asyncio.Event()

    class HangingTransport(FakeTransport):
        async def send(
            self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str = ""
        ) -> None:
            await release.wait()
            await super().send(channel, message, mention, nonce)

    transport = HangingTransport()
    router, bus, _, _ = make_router(transport)
    await router.start()
    for i in range(20):
        bus.publish(rejected(i))
    await asyncio.sleep(0)

    assert transport.sent == []
    release.set()
    await wait_for(lambda: len(transport.sent) == 2)
    await router.stop()


async def test_stop_when_messages_queued_then_delivered_in_order_and_later_ignored() -> None:
    transport = FakeTransport()
    router, _, _, _ = make_router(transport)
    await router.start()
    router.publish(msg("a"))
    router.publish(msg("b"))
    router.publish(msg("going-down"))

    await router.stop(deadline_s=2)
    router.publish(msg("late"))

    assert [m.kind for _, m, _ in transport.sent] == ["a", "b", "going-down"]


async def test_stop_when_transport_down_then_returns_by_the_deadline() -> None:
    transport = FakeTransport(ready=False)
    router, _, _, _ = make_router(transport)
    await router.start()
    router.publish(msg("a"))

    await router.stop(deadline_s=0.05)

    assert transport.sent == []


async def test_console_transport_when_critical_then_prints_channel_mention_and_text() -> None:
    lines: list[str] = []
    console = ConsoleTransport(lines.append)

    await console.send(Channel.SYSTEM_ALERTS, msg("halt", Severity.CRITICAL), "<@&123>")
    await console.send(Channel.TRADES, msg("fill", channel=Channel.TRADES), None)
    report = AlertMessage(
        Channel.REPORTS,
        Severity.INFO,
        "eod",
        "end-of-day",
        attachment=b"png",
        attachment_name="e.png",
    )
    await console.send(Channel.REPORTS, report, None)

    assert lines == [
        "[#system-alerts] @role halt text",
        "[#trades] fill text",
        "[#reports] eod\n(attachment e.png: 3 bytes, not shown here)",
    ]


async def test_intake_when_events_before_start_then_delivered_once_started() -> None:
    transport = FakeTransport()
    router, bus, _, _ = make_router(transport)
    bus.publish(rejected())  # e.g. drift found while the engine starts, before the sender runs

    await router.start()
    await wait_for(lambda: len(transport.sent) == 2)
    await router.stop()

    assert [c for c, _, _ in transport.sent] == [Channel.TRADES, Channel.SYSTEM_ALERTS]


# ---- outages that is_ready() does not show, and the summary after them --------------------


async def connected_router(transport: FakeTransport, **options: Any):
    """A router that has posted once already, so what follows is not start-up."""
    router, bus, clock, sleep = make_router(transport, **options)
    await router.start()
    router.publish(msg("boot"))
    await wait_for(lambda: len(transport.sent) == 1)
    return router, bus, clock, sleep


async def test_outage_when_posts_cannot_reach_discord_then_held_in_order_never_given_up():
    transport = FakeTransport()  # the gateway has not noticed yet: still "ready"
    router, _, _, _ = await connected_router(transport)
    transport.unreachable_next = 30  # far more than MAX_SEND_ATTEMPTS
    for i in range(7):
        router.publish(msg(f"m{i}", channel=Channel.TRADES))

    await wait_for(lambda: len(transport.sent) == 9)
    await router.stop()

    assert [m.kind for _, m, _ in transport.sent[1:8]] == [f"m{i}" for i in range(7)]
    assert router.stats.failed == 0
    summary = transport.sent[-1][1]
    assert summary.channel is Channel.SYSTEM_ALERTS
    assert summary.text.startswith("📶 Discord was unreachable for ")
    assert summary.text.endswith(": the 7 alerts before this one waited and are late. None lost.")


async def test_outage_when_gateway_down_then_held_and_summary_counts_late_and_dropped():
    transport = FakeTransport()
    router, _, clock, _ = await connected_router(transport, queue_size=2, outage_buffer=4)
    transport.ready = False  # on_disconnect
    for i in range(6):
        router.publish(msg(f"m{i}"))
    clock.advance(95)
    assert len(transport.sent) == 1

    transport.ready = True  # on_resumed
    await wait_for(lambda: len(transport.sent) == 6)
    await router.stop()

    assert [m.kind for _, m, _ in transport.sent[1:5]] == ["m0", "m1", "m2", "m3"]
    assert transport.texts[-1] == (
        "📶 Discord was unreachable for 1m 35s: the 4 alerts before this one waited and are "
        "late. ⚠️ 2 low-priority alerts dropped (too many at once)."
    )
    assert router.stats.held_late == 4


async def test_outage_when_gateway_down_with_nothing_to_post_then_one_line_once_back() -> None:
    transport = FakeTransport()
    router, _, clock, _ = await connected_router(transport, link_check_s=0.01)
    transport.ready = False  # on_disconnect; nothing is published meanwhile
    await asyncio.sleep(0.05)  # the idle router looks at the link meanwhile
    clock.advance(125)
    assert len(transport.sent) == 1

    transport.ready = True  # on_resumed
    await wait_for(lambda: len(transport.sent) == 2)
    await asyncio.sleep(0.05)
    await router.stop()

    assert transport.texts == [
        "boot text",
        "📶 Discord was unreachable for 2m 05s: no alerts were waiting. None lost.",
    ]
    assert transport.sent[-1][0] is Channel.SYSTEM_ALERTS


async def test_idle_when_waiting_for_first_connection_then_no_outage_line() -> None:
    transport = FakeTransport(ready=False)
    router, _, clock, _ = make_router(transport, link_check_s=0.01)
    await router.start()
    await asyncio.sleep(0.05)
    clock.advance(60)

    transport.ready = True
    await asyncio.sleep(0.05)
    await router.stop()

    assert transport.sent == []


async def test_outage_when_waiting_for_first_connection_then_no_outage_summary() -> None:
    transport = FakeTransport(ready=False)
    router, _, _, sleep = make_router(transport)
    await router.start()
    router.publish(msg("boot"))
    await wait_for(lambda: len(sleep.calls) >= 3)

    transport.ready = True
    await wait_for(lambda: len(transport.sent) == 1)
    await router.stop()

    assert transport.texts == ["boot text"]


async def test_retry_when_post_timed_out_then_same_nonce_each_attempt_and_new_one_per_message():
    transport = FakeTransport()
    transport.unreachable_next = 2
    router, _, _, _ = make_router(transport)
    router.publish(msg("a"))
    router.publish(msg("b"))
    await router.start()
    await wait_for(lambda: len(transport.sent) == 2)
    await router.stop()

    first, again, third, other = transport.nonces[:4]
    assert first == again == third
    assert other != first
    assert len(first) <= 22  # Discord takes 25 characters; the transport adds ".<part>"


@pytest.mark.parametrize(
    ("reason", "channels"),
    [
        ("reducing_only", [Channel.TRADES]),
        ("halted", [Channel.TRADES]),
        ("market_closed", [Channel.TRADES]),
        ("max_position_qty", [Channel.TRADES, Channel.SYSTEM_ALERTS]),
        ("buying_power", [Channel.TRADES, Channel.SYSTEM_ALERTS]),
    ],
)
def test_describe_when_risk_refusal_then_state_refusals_stay_out_of_system_alerts(
    reason: str, channels: list[Channel]
) -> None:
    """A strategy signalling every bar through a long REDUCING (a full disk) must not fill
    #system-alerts: refusals that follow from the state (announced there once) stay in
    #trades; a limit's refusal goes to both."""
    event = RiskRejected(
        ts=T0,
        client_order_id="c1",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(10),
        reason=reason,
        detail="why",
    )

    assert [m.channel for m in describe(event)] == channels


async def test_router_when_cancelled_as_it_is_woken_then_it_stops() -> None:
    # On Python 3.11 asyncio.wait_for swallows a cancel that lands as the awaited event is
    # set: the idle loop went round again and a stop waiting for it never finished.
    transport = FakeTransport()
    router, _, _, _ = make_router(transport)
    await router.start()
    task = router._task
    assert task is not None
    await wait_for(router._idle.is_set)  # the loop now waits for a wake-up
    router._wake.set()
    task.cancel()  # in the same turn as the wake-up

    done, _ = await asyncio.wait({task}, timeout=1)

    assert task in done
    assert task.cancelled()
