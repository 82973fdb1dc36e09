"""Alert delivery. (Minimal console version; the full router arrives with the alerts issue.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.messages import describe
from engine.app import EngineApp
from engine.events import Event


def attach_console_alerts(
    app: EngineApp, print_line: Callable[[str], None]
) -> Callable[[], Awaitable[None]]:
    """Print every alert as ``[#channel] text``; returns an async detach function."""

    def on_event(event: Event) -> None:
        for message in describe(event):
            print_line(f"[#{message.channel.value}] {message.text}")

    unsubscribe = app.bus.subscribe(Event, on_event)

    async def detach() -> None:
        unsubscribe()

    return detach
