"""In-process publish/subscribe for engine events.

Dispatch is synchronous and cheap: a handler must not block. Handlers that need to do I/O
(the alert router, Discord) put the event on their own queue. A failing handler is logged and
never raises into the publisher, so a broken subscriber cannot stop trading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from engine.events import Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[type[Event], Callable[[Any], None]]] = []
        self.handler_errors = 0

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler`` for every published instance of ``event_type`` (or a subclass).

        Returns a function that removes the subscription.
        """
        entry: tuple[type[Event], Callable[[Any], None]] = (event_type, handler)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for event_type, handler in list(self._subscribers):
            if isinstance(event, event_type):
                try:
                    handler(event)
                except Exception:
                    self.handler_errors += 1
                    log.exception("event handler %r failed on %s", handler, type(event).__name__)
