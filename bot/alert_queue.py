"""The alert router's queue: bounded, coalescing, severity-aware, in arrival order.

- Messages of one kind on one channel within ``window_s`` become one entry: repeats of a text
  are counted (``50 × ...``), different texts stay one line each (up to ``MAX_MERGED_LINES``);
  critical messages are never merged.
- Past the bound, the oldest message of the lowest severity below the new one's is evicted;
  if there is none the new one is dropped. Critical messages are never dropped: they evict,
  or go over the bound. Every drop is counted, to be reported later.
- While delivery is held (an outage) the bound is ``outage_buffer`` instead of ``queue_size``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field

from bot.messages import AlertMessage, Channel
from engine.events import Severity

log = logging.getLogger(__name__)

MAX_MERGED_LINES = 15

_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(eq=False, slots=True)
class Entry:
    message: AlertMessage
    first_mono: float
    nonce: str
    """Sent with every attempt to post this entry: Discord posts a nonce once (enforce_nonce),
    so a retry after a timeout whose post did land shows the message once."""
    count: int = 1
    protected: bool = False
    """Never evicted and never merged (the router's own summaries)."""
    texts: dict[str, int] = field(default_factory=dict)
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

    def to_send(self) -> AlertMessage:
        if self.count == 1:
            return self.message
        return dataclasses.replace(self.message, text=self.merged_text())

    @property
    def key(self) -> tuple[str, Channel]:
        return (self.message.kind, self.message.channel)

    @property
    def rank(self) -> int:
        return 3 if self.protected else _RANK[self.message.severity]


class AlertQueue:
    def __init__(self, *, queue_size: int, outage_buffer: int, window_s: float) -> None:
        if queue_size < 1 or outage_buffer < 1:
            raise ValueError("queue_size and outage_buffer must be at least 1")
        self.queue_size = queue_size
        self.outage_buffer = max(queue_size, outage_buffer)
        self.window_s = window_s
        self.held = False
        """Delivery is held (an outage): the bound is ``outage_buffer``."""
        self.coalesced = 0
        self.dropped: Counter[str] = Counter()
        self.unreported_drops = 0
        self._entries: deque[Entry] = deque()
        self._criticals = 0
        self._nonce_prefix = secrets.token_hex(5)
        self._nonces = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def has_critical(self) -> bool:
        return self._criticals > 0

    def head(self) -> Entry:
        return self._entries[0]

    def pop(self) -> Entry:
        entry = self._entries.popleft()
        if entry.message.critical:
            self._criticals -= 1
        return entry

    def new_entry(self, message: AlertMessage, now: float, *, protected: bool = False) -> Entry:
        return Entry(message, now, self.next_nonce(), protected=protected)

    def next_nonce(self) -> str:
        return f"{self._nonce_prefix}{next(self._nonces)}"

    def add(self, message: AlertMessage, now: float) -> None:
        """Merge, queue, or drop (counted) ``message``."""
        if not message.critical and self._merge(message, now):
            return
        entry = self.new_entry(message, now)
        bound = self.outage_buffer if self.held else self.queue_size
        if len(self._entries) >= bound and not self._make_room(entry):
            self._count_drop(entry)
            return
        self.append(entry)

    def append(self, entry: Entry) -> None:
        """Queue ``entry`` at the end whatever the bound (protected summaries)."""
        self._entries.append(entry)
        if entry.message.critical:
            self._criticals += 1

    def _merge(self, message: AlertMessage, now: float) -> bool:
        key = (message.kind, message.channel)
        for entry in reversed(self._entries):
            if now - entry.first_mono > self.window_s:
                break  # entries are in arrival order: nothing older can be in the window
            if entry.key == key and not entry.protected and not entry.message.critical:
                entry.count += 1
                entry.texts[message.text] = entry.texts.get(message.text, 0) + 1
                if _RANK[message.severity] > _RANK[entry.message.severity]:
                    entry.message = dataclasses.replace(entry.message, severity=message.severity)
                self.coalesced += 1
                return True
        return False

    def _make_room(self, new: Entry) -> bool:
        """Evict the oldest of the lowest-severity messages below ``new``'s severity. A
        critical message is always accepted, over the bound if everything queued is critical."""
        victim: Entry | None = None
        for entry in self._entries:
            if entry.rank < new.rank and (victim is None or entry.rank < victim.rank):
                victim = entry
        if victim is None:
            return new.message.critical
        self._entries.remove(victim)
        self._count_drop(victim)
        return True

    def _count_drop(self, entry: Entry) -> None:
        self.dropped[entry.message.kind] += entry.count
        self.unreported_drops += entry.count
        log.debug("alert dropped (queue full): %s", entry.message.text)
