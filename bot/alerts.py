"""Alert delivery: engine events and job reports to the trader's channels, never in the way.

The bus handler only converts events (``bot.messages.describe``) and enqueues; one sender task
delivers through a ``Transport`` (Discord, or the console). Between them the bounded,
coalescing queue of ``bot.alert_queue`` (drops counted, reported later on system-alerts).
  - While the transport is not ready (the gateway disconnected) or Discord cannot be reached
    (``SendUnavailable``) messages wait, up to ``outage_buffer``, and go out in order after;
    then one summary says how long it lasted, how many alerts are late and how many were lost.
    An idle router looks at the transport every ``link_check_s``, so an outage with nothing
    to post is announced too once the gateway is back (how long it lasted).
  - Each message keeps one nonce across its retries: a post that landed although its reply
    was lost is not posted twice.
  - Other failures are retried with backoff, ``MAX_SEND_ATTEMPTS`` in all, then counted as
    lost and reported; nothing reaches the publisher.
Channels the transport does not have fall back to system-alerts, with one warning each.
Only critical messages mention anyone (the configured role, else the configured user).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.alert_queue import MAX_MERGED_LINES, AlertQueue, Entry
from bot.fmt import duration
from bot.messages import AlertMessage, Channel, describe
from config.settings import ChannelSettings
from engine.backoff import backoff_delay
from engine.bus import EventBus
from engine.clock import Clock
from engine.commands import count
from engine.events import Event, Severity

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]

__all__ = ["MAX_MERGED_LINES", "AlertRouter", "ConsoleTransport", "SendUnavailable", "Transport"]

MAX_SEND_ATTEMPTS = 5
MAX_BACKOFF_S = 15.0
DROPPED_KIND = "alerts-dropped"
FALLBACK_KIND = "channel-fallback"


class SendUnavailable(Exception):
    """The post could not reach Discord (network down, timeout, Discord 5xx) and may or may
    not have landed: the router keeps the message and tries again with the same nonce, for as
    long as it takes, without using up its attempts."""


class Transport(Protocol):
    name: str

    def is_ready(self) -> bool: ...  # False while the gateway is disconnected

    def has_channel(self, channel: Channel) -> bool: ...  # a channel id is configured/resolvable

    async def send(
        self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str
    ) -> None:
        """Post ``message``; ``nonce`` is the same on every retry of it. Raises
        ``SendUnavailable`` when Discord cannot be reached, anything else on other failures."""


class ConsoleTransport:
    """Prints ``[#channel] text``; always ready, has every channel."""

    name = "console"

    def __init__(self, print_line: Callable[[str], None]) -> None:
        self._print = print_line

    def is_ready(self) -> bool:
        return True

    def has_channel(self, channel: Channel) -> bool:
        return True

    async def send(
        self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str = ""
    ) -> None:
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
    queue: AlertQueue = field(repr=False)
    sent: int = 0
    retried: int = 0
    failed: int = 0
    """Messages given up on after ``MAX_SEND_ATTEMPTS`` or with no channel to go to."""
    held_late: int = 0
    """Messages held through an outage and delivered after it."""

    @property
    def coalesced(self) -> int:
        """Messages merged into an earlier one of the same kind and channel."""
        return self.queue.coalesced

    @property
    def dropped(self) -> Counter[str]:
        """Dropped messages by kind (queue full)."""
        return self.queue.dropped

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


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
        link_check_s: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._queue = AlertQueue(
            queue_size=queue_size, outage_buffer=outage_buffer, window_s=coalesce_window_s
        )
        self._transport = transport
        self._channels = channels
        self._clock = clock
        self._retry_base = retry_base_s
        self._link_check_s = link_check_s
        self._sleep = sleep
        self.stats = RouterStats(self._queue)
        self._unreported_failures = 0
        self._down_since: float | None = None
        self._seen_up = False
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
        self._holding()  # sets the outage bound before the message counts against it
        self._queue.add(message, self._clock.monotonic())
        self._wake.set()

    def _append_summary(self, text: str) -> None:
        message = AlertMessage(Channel.SYSTEM_ALERTS, Severity.WARNING, text, DROPPED_KIND)
        self._queue.append(self._queue.new_entry(message, self._clock.monotonic(), protected=True))
        self._wake.set()

    # ---- delivery ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._report_losses()
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that
                # lands as the event is set, and this loop would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._link_check_s):
                        await self._wake.wait()
                self._watch_link()
                continue
            self._idle.clear()
            if self._holding():
                await self._sleep(self._retry_base)
                continue
            wait = self._queue.head().first_mono + self._queue.window_s - self._clock.monotonic()
            # Hold a message for its window so a burst can still merge into it, unless a
            # critical message is waiting behind it or we are flushing on stop.
            if wait > 0 and not self._flushing and not self._queue.has_critical:
                await self._sleep(wait)
                continue
            head = self._queue.pop()
            try:
                await self._deliver(head)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert delivery failed unexpectedly")
                if not head.protected:
                    self._lost(head.count)

    def _holding(self) -> bool:
        """True while the transport is down: messages wait, the outage bound applies."""
        if self._transport.is_ready():
            if self._down_since is None and len(self._queue) <= self._queue.queue_size:
                self._queue.held = False
            return False
        self._outage_started()
        return True

    def _outage_started(self) -> None:
        self._queue.held = True
        if self._down_since is None:
            self._down_since = self._clock.monotonic()
            log.warning("alerts held: %s transport not ready", self._transport.name)

    def _watch_link(self) -> None:
        """Idle, nothing to post: an outage is noticed all the same, and its end announced
        (``_posted`` does it when alerts waited through it)."""
        if not self._transport.is_ready():
            if self._seen_up:  # waiting for the first connection at start-up is no outage
                self._outage_started()
            return
        self._seen_up = True
        if self._down_since is None or self._queue:
            return
        lasted = self._clock.monotonic() - self._down_since
        self._down_since = None
        self._announce_back(lasted, "no alerts were waiting.")

    def _posted(self) -> None:
        """A post landed. The first after an outage says how long it was, how many alerts it
        made late and how many it cost, ahead of anything published after it."""
        self.stats.sent += 1
        was_up, self._seen_up = self._seen_up, True
        if self._down_since is None:
            return
        lasted = self._clock.monotonic() - self._down_since
        self._down_since = None
        if not was_up:
            return  # waiting for the first connection at start-up is no outage
        late = len(self._queue) + 1  # the message just posted was held too
        self.stats.held_late += late
        self._announce_back(
            lasted, f"the {count(late, 'alert')} before this one waited and are late."
        )

    def _announce_back(self, lasted: float, waited: str) -> None:
        """The one summary of an outage that ended: how long, what waited, what was lost."""
        log.warning("%s transport back after %.1f s", self._transport.name, lasted)
        losses = self._take_losses()
        self._append_summary(
            f"📶 Discord was unreachable for {duration(lasted)}: {waited} "
            + (losses or "None lost.")
        )

    def _lost(self, n: int) -> None:
        self.stats.failed += n
        self._unreported_failures += n

    def _take_losses(self) -> str:
        dropped, self._queue.unreported_drops = self._queue.unreported_drops, 0
        failed, self._unreported_failures = self._unreported_failures, 0
        parts = []
        if dropped:
            parts.append(f"{count(dropped, 'low-priority alert')} dropped (too many at once)")
        if failed:
            parts.append(f"{count(failed, 'alert')} could not be posted (see the log)")
        return "⚠️ " + "; ".join(parts) + "." if parts else ""

    def _report_losses(self) -> None:
        losses = self._take_losses()
        if losses:
            self._append_summary(losses)

    async def _deliver(self, entry: Entry) -> None:
        message = entry.to_send()
        target = await self._target(message.channel)
        if target is None:
            log.error("alert lost, no channel to send it to: %s", message.text)
        elif await self._send(target, message, mention_for(message, self._channels), entry.nonce):
            return
        if not entry.protected:  # a summary that cannot be posted is not summarised again
            self._lost(entry.count)

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
            await self._send(Channel.SYSTEM_ALERTS, warning, None, self._queue.next_nonce())
        return Channel.SYSTEM_ALERTS

    async def _send(
        self, channel: Channel, message: AlertMessage, mention: str | None, nonce: str
    ) -> bool:
        """Post until it lands (True) or fails for good (False). While the transport is down
        or Discord cannot be reached the message waits, without using up its attempts."""
        failures = unreachable = 0
        while True:
            if self._holding():
                await self._sleep(self._retry_base)
                continue
            try:
                await self._transport.send(channel, message, mention, nonce)
            except asyncio.CancelledError:
                raise
            except SendUnavailable as exc:
                self._outage_started()
                unreachable += 1
                delay = self._retry_delay(unreachable)
                log.warning("alert to #%s waits: %s; retry in %.1f s", channel.value, exc, delay)
            except Exception as exc:
                failures += 1
                if failures >= MAX_SEND_ATTEMPTS:
                    log.error(
                        "alert to #%s given up after %d attempts (%s): %s",
                        channel.value,
                        failures,
                        exc,
                        message.text,
                    )
                    return False
                delay = self._retry_delay(failures)
                log.warning(
                    "alert to #%s failed (%s); retry %d in %.1f s",
                    channel.value,
                    exc,
                    failures,
                    delay,
                )
            else:
                self._posted()
                return True
            self.stats.retried += 1
            await self._sleep(delay)

    def _retry_delay(self, attempt: int) -> float:
        return backoff_delay(
            attempt, base_s=self._retry_base, cap_s=max(MAX_BACKOFF_S, self._retry_base)
        )
