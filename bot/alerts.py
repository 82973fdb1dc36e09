"""Alert delivery: engine events and job reports to the trader's channels, never in the way.

The bus handler only converts events (``bot.messages.describe``) and enqueues; one sender task
delivers through a ``Transport`` (Discord, or the console). Between them a bounded queue:
  - bursts of one kind on one channel within ``coalesce_window_s`` become one message:
    repeats of the same text are counted (``50 × ...``), different texts stay one line each
    (up to ``MAX_MERGED_LINES``); critical messages are never merged;
  - when full, low-severity messages are dropped (counted, and reported later on
    system-alerts); critical ones never are: they evict a lower-severity message instead;
  - while the transport is not ready (gateway outage) messages are kept, up to
    ``outage_buffer``, and delivered in order after it reconnects;
  - a failing send is logged and retried with backoff; nothing reaches the publisher.
Channels the transport does not have fall back to system-alerts, with one warning each.
Only critical messages mention anyone (the configured role, else the configured user).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.messages import AlertMessage, Channel, describe
from config.settings import ChannelSettings
from engine.backoff import backoff_delay
from engine.bus import EventBus
from engine.clock import Clock
from engine.events import Event, Severity

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]

MAX_SEND_ATTEMPTS = 5
MAX_BACKOFF_S = 60.0
DROPPED_KIND = "alerts-dropped"
FALLBACK_KIND = "channel-fallback"

_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Transport(Protocol):
    name: str

    def is_ready(self) -> bool: ...  # False during a gateway outage

    def has_channel(self, channel: Channel) -> bool: ...  # a channel id is configured/resolvable

    async def send(
        self, channel: Channel, message: AlertMessage, mention: str | None
    ) -> None: ...  # raises on failure


class ConsoleTransport:
    """Prints ``[#channel] text``; always ready, has every channel."""

    name = "console"

    def __init__(self, print_line: Callable[[str], None]) -> None:
        self._print = print_line

    def is_ready(self) -> bool:
        return True

    def has_channel(self, channel: Channel) -> bool:
        return True

    async def send(self, channel: Channel, message: AlertMessage, mention: str | None) -> None:
        prefix = f"[#{channel.value}] "
        if mention:
            prefix += "@role " if mention.startswith("<@&") else "@user "
        line = prefix + message.text
        if message.attachment is not None:
            name = message.attachment_name or "attachment"
            line += f"\n(attachment {name}: {len(message.attachment)} bytes, not shown here)"
        self._print(line)


@dataclass
class RouterStats:
    sent: int = 0
    coalesced: int = 0
    """Messages merged into an earlier one of the same kind and channel."""
    retried: int = 0
    failed: int = 0
    """Messages given up on after ``MAX_SEND_ATTEMPTS`` or with no channel to go to."""
    dropped: Counter[str] = field(default_factory=Counter)
    """Dropped messages by kind (queue full)."""

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


MAX_MERGED_LINES = 15


@dataclass(eq=False, slots=True)
class _Entry:
    message: AlertMessage
    first_mono: float
    count: int = 1
    protected: bool = False
    """Never evicted and never merged (the drop summary)."""
    texts: dict[str, int] = dataclasses.field(default_factory=dict)
    """Distinct texts merged into this entry, with how often each came, in arrival order."""

    def __post_init__(self) -> None:
        if not self.texts:
            self.texts[self.message.text] = 1

    def merged_text(self) -> str:
        """One line per distinct message (``n × text`` for repeats): fifty identical rejects
        read as one line, three different fills stay three lines."""
        lines = [text if n == 1 else f"{n} × {text}" for text, n in self.texts.items()]
        if len(lines) > MAX_MERGED_LINES:
            hidden = sum(list(self.texts.values())[MAX_MERGED_LINES:])
            lines = [*lines[:MAX_MERGED_LINES], f"…and {hidden} more"]
        return "\n".join(lines)

    @property
    def key(self) -> tuple[str, Channel]:
        return (self.message.kind, self.message.channel)

    @property
    def rank(self) -> int:
        return 3 if self.protected else _RANK[self.message.severity]


def mention_for(message: AlertMessage, channels: ChannelSettings) -> str | None:
    """The mention a message carries: critical ones only, the role first, else the user."""
    if not message.critical:
        return None
    if channels.critical_mention_role_id is not None:
        return f"<@&{channels.critical_mention_role_id}>"
    if channels.critical_mention_user_id is not None:
        return f"<@{channels.critical_mention_user_id}>"
    return None


class AlertRouter:
    def __init__(
        self,
        bus: EventBus,
        transport: Transport,
        channels: ChannelSettings,
        *,
        clock: Clock,
        queue_size: int = 500,
        coalesce_window_s: float = 1.0,
        outage_buffer: int = 1000,
        retry_base_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if queue_size < 1 or outage_buffer < 1:
            raise ValueError("queue_size and outage_buffer must be at least 1")
        self._transport = transport
        self._channels = channels
        self._clock = clock
        self._queue_size = queue_size
        self._window = coalesce_window_s
        self._outage_buffer = max(queue_size, outage_buffer)
        self._retry_base = retry_base_s
        self._sleep = sleep
        self.stats = RouterStats()
        self._queue: deque[_Entry] = deque()
        self._criticals = 0
        self._unreported_drops = 0
        self._backlog = False
        self._flushing = False
        self._closed = False
        self._warned: set[Channel] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Intake starts now, delivery at start(): built before the engine starts, the router
        # keeps start-up events (reconcile drift) even when started after the engine.
        self._unsubscribe: Callable[[], None] | None = bus.subscribe(Event, self._on_event)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start delivering. Bus events are taken from construction on; until the transport
        is ready (Discord before its gateway connects) messages wait as in an outage."""
        self._start_sender()

    def _start_sender(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alert-router")

    async def stop(self, deadline_s: float = 5.0) -> None:
        """Stop taking events, deliver what is queued (in order) within ``deadline_s``, stop."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        self._flushing = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._drained(), deadline_s)
        except TimeoutError:
            log.warning("alert router stopped with %d messages undelivered", len(self._queue))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _drained(self) -> None:
        while self._queue or not self._idle.is_set():
            self._idle.clear()
            await self._idle.wait()

    # ---- intake (synchronous, never waits) ----------------------------------------------

    def _on_event(self, event: Event) -> None:
        try:
            messages = describe(event)
        except Exception:
            log.exception("could not describe %s", type(event).__name__)
            return
        for message in messages:
            self.publish(message)

    def publish(self, message: AlertMessage) -> None:
        """Queue a message for delivery; returns at once."""
        if self._closed:
            log.debug("alert after stop ignored: %s", message.text)
            return
        now = self._clock.monotonic()
        if not message.critical and self._merge(message, now):
            return
        entry = _Entry(message, now)
        if len(self._queue) >= self._capacity() and not self._make_room(entry):
            self._count_drop(entry)
            return
        self._append(entry)

    def _merge(self, message: AlertMessage, now: float) -> bool:
        key = (message.kind, message.channel)
        for entry in reversed(self._queue):
            if now - entry.first_mono > self._window:
                break  # entries are in arrival order: nothing older can be in the window
            if entry.key == key and not entry.protected and not entry.message.critical:
                entry.count += 1
                entry.texts[message.text] = entry.texts.get(message.text, 0) + 1
                if _RANK[message.severity] > _RANK[entry.message.severity]:
                    entry.message = dataclasses.replace(entry.message, severity=message.severity)
                self.stats.coalesced += 1
                return True
        return False

    def _capacity(self) -> int:
        if self._backlog or not self._transport.is_ready():
            return self._outage_buffer
        return self._queue_size

    def _make_room(self, new: _Entry) -> bool:
        """Evict the oldest of the lowest-severity messages below ``new``'s severity. A
        critical message is always accepted, over the bound if everything queued is critical."""
        victim: _Entry | None = None
        for entry in self._queue:
            if entry.rank < new.rank and (victim is None or entry.rank < victim.rank):
                victim = entry
        if victim is None:
            return new.message.critical
        self._queue.remove(victim)
        self._count_drop(victim)
        return True

    def _count_drop(self, entry: _Entry) -> None:
        self.stats.dropped[entry.message.kind] += entry.count
        self._unreported_drops += entry.count
        log.debug("alert dropped (queue full): %s", entry.message.text)

    def _append(self, entry: _Entry) -> None:
        self._queue.append(entry)
        if entry.message.critical:
            self._criticals += 1
        self._wake.set()

    # ---- delivery ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._report_drops()
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._idle.clear()
            if not self._transport.is_ready():
                if not self._backlog:
                    log.warning("alerts held: %s transport not ready", self._transport.name)
                self._backlog = True
                await self._sleep(self._retry_base)
                continue
            if self._backlog and len(self._queue) <= self._queue_size:
                self._backlog = False
            head = self._queue[0]
            wait = head.first_mono + self._window - self._clock.monotonic()
            # Hold a message for its window so a burst can still merge into it, unless a
            # critical message is waiting behind it or we are flushing on stop.
            if wait > 0 and not self._flushing and self._criticals == 0:
                await self._sleep(wait)
                continue
            self._queue.popleft()
            if head.message.critical:
                self._criticals -= 1
            try:
                await self._deliver(head)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert delivery failed unexpectedly")
                self.stats.failed += 1

    def _report_drops(self) -> None:
        if not self._unreported_drops:
            return
        count, self._unreported_drops = self._unreported_drops, 0
        text = f"⚠️ {count} low-priority alerts dropped (too many at once)."
        message = AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, DROPPED_KIND)
        self._append(_Entry(message, self._clock.monotonic(), protected=True))

    async def _deliver(self, entry: _Entry) -> None:
        message = entry.message
        if entry.count > 1:
            message = dataclasses.replace(message, text=entry.merged_text())
        target = await self._target(message.channel)
        if target is None:
            self.stats.failed += 1
            log.error("alert lost, no channel to send it to: %s", message.text)
            return
        await self._send(target, message, mention_for(message, self._channels))

    async def _target(self, channel: Channel) -> Channel | None:
        if self._transport.has_channel(channel):
            return channel
        if not self._transport.has_channel(Channel.SYSTEM_ALERTS):
            return None
        if channel not in self._warned:
            self._warned.add(channel)
            text = (
                f"⚠️ No #{channel.value} channel is configured or reachable: its messages "
                f"come to #{Channel.SYSTEM_ALERTS.value} instead."
            )
            log.warning(text)
            warning = AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, FALLBACK_KIND)
            await self._send(Channel.SYSTEM_ALERTS, warning, None)
        return Channel.SYSTEM_ALERTS

    async def _send(self, channel: Channel, message: AlertMessage, mention: str | None) -> None:
        attempt = 0
        while True:
            if not self._transport.is_ready():
                self._backlog = True
                await self._sleep(self._retry_base)
                continue
            try:
                await self._transport.send(channel, message, mention)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                if attempt >= MAX_SEND_ATTEMPTS:
                    self.stats.failed += 1
                    log.error(
                        "alert to #%s given up after %d attempts (%s): %s",
                        channel.value,
                        attempt,
                        exc,
                        message.text,
                    )
                    return
                self.stats.retried += 1
                delay = backoff_delay(
                    attempt, base_s=self._retry_base, cap_s=max(MAX_BACKOFF_S, self._retry_base)
                )
                log.warning(
                    "alert to #%s failed (%s); retry %d in %.1f s",
                    channel.value,
                    exc,
                    attempt,
                    delay,
                )
                await self._sleep(delay)
                continue
            self.stats.sent += 1
            return
