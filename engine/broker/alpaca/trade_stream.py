"""Alpaca's trade-updates WebSocket, our own client.

Why not alpaca-py's ``TradingStream``: inside a running loop it needs its private
``_run_forever``/``stop_ws`` (docs/library-facts.md), its reconnect loop is fixed and silent:
it cannot tell us when it was down. The protocol is three JSON messages, so our own ``websockets``
client costs little and gives us what the engine needs: reconnect with exponential backoff
and jitter, a ``StreamGap`` after every outage so missed fills are recovered from the REST API,
connectivity callbacks for alerts, and health counters.

Protocol: send ``{"action": "authenticate", "data": {"key_id", "secret_key"}}``, expect
``{"stream": "authorization", "data": {"status": "authorized"}}``; send ``{"action": "listen",
"data": {"streams": ["trade_updates"]}}``, expect ``{"stream": "listening"}``; then every
``{"stream": "trade_updates", "data": {...}}`` is one update. Alpaca sends binary frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from engine.backoff import Backoff
from engine.broker.alpaca import convert
from engine.broker.port import RejectedUpdate, StreamGap, TradeUpdate
from engine.clock import Clock
from engine.feed.base import FeedHealth
from engine.health import BrokerHealth
from engine.reconnect import Drop, Link, keep_connected

log = logging.getLogger(__name__)

YIELD_EVERY: Final = 16
"""Frames read, and updates handed on, between two turns given to the rest of the loop: a
close-all of 2,000 positions sends 6,000 updates at once, already buffered, and neither
reading them nor taking them from the queue ever waits. Without a turn the loop would run
nothing else (the flatten's own broker answers, commands) until the burst is through."""

ConnectionCallback = Callable[[bool, str], None]
"""``on_connection(up, detail)``: the engine turns it into ``ConnectionChanged`` events."""


class _Stop:
    pass


_STOP: Final = _Stop()


class StreamRefused(Exception):
    """The server refused the handshake (bad keys, unexpected reply)."""


class TradeUpdateStream:
    """Keeps one trade-updates connection alive and queues what it receives for
    ``updates()``. ``start()`` connects in the background; a connection that drops is
    re-opened with backoff and followed by a ``StreamGap(down_at, up_at)``."""

    def __init__(
        self,
        url: str,
        key_id: str,
        secret_key: str,
        clock: Clock,
        *,
        on_connection: ConnectionCallback | None = None,
        backoff: Backoff | None = None,
        link: Link | None = None,
        liveness: BrokerHealth | None = None,
        liveness_s: float = 1.0,
    ) -> None:
        self._link = link if link is not None else Link(url)
        """Timeouts and keepalive; ``url`` with the defaults unless given."""
        self._key_id = key_id
        self._secret = secret_key
        self._clock = clock
        self.on_connection = on_connection
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=30.0)
        self.liveness = liveness
        """Told when the broker may be gone: the stream dropped or a ping went unanswered."""
        self.liveness_s = liveness_s
        self._queue: asyncio.Queue[TradeUpdate | StreamGap | RejectedUpdate | _Stop] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._stopping = False
        self._announced: bool | None = None
        self.health = FeedHealth(detail="not started")
        self._down_at: datetime | None = None
        self._up_at: datetime | None = None
        self._first = True
        self.gaps = 0
        self.skipped = 0
        """Frames that carry nothing for us (heartbeats), skipped."""

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def start(self, wait_s: float = 0.0) -> bool:
        """Start the connection loop; wait up to ``wait_s`` for the first connection.
        Returns whether it is up. A slow first connection is not an error: the loop keeps
        trying and reports a gap from now once it gets through."""
        if self._task is None:
            self._stopping = False
            started_at = self._clock.now()
            self._task = asyncio.get_running_loop().create_task(
                self._run(started_at), name="alpaca-trade-updates"
            )
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), wait_s)
        return self.connected

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._up.clear()
        self.health.connected = False
        self.health.detail = "stopped"
        self._queue.put_nowait(_STOP)

    async def updates(self) -> AsyncIterator[TradeUpdate | StreamGap | RejectedUpdate]:
        """Every update and gap, in order, until ``stop()``."""
        handed = 0
        while True:
            item = await self._queue.get()
            if isinstance(item, _Stop):
                if self._stopping:
                    return
                continue
            yield item
            handed += 1
            if handed % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    # -- the connection loop ------------------------------------------------------------

    async def _run(self, started_at: datetime) -> None:
        # The first connection reports no gap (the engine reconciles at start-up) unless it
        # failed: then everything from start() on may have been missed.
        self._down_at, self._up_at, self._first = None, None, True
        await keep_connected(
            self._link,
            clock=self._clock,
            backoff=self.backoff,
            handshake=self._handshake,
            serve=self._serve,
            on_up=self._on_up,
            on_down=functools.partial(self._on_down, started_at),
            refusal=_refusal,
        )

    def _on_up(self) -> None:
        up_at = self._clock.now()
        if self._down_at is not None:
            self.gaps += 1
            self._queue.put_nowait(StreamGap(down_at=self._down_at, up_at=up_at))
            self.health.reconnects += 1
        self._down_at, self._up_at = None, up_at
        self._set_up(self._first)
        self._first = False

    def _on_down(self, started_at: datetime, drop: Drop) -> None:
        if drop.cut and self.liveness is not None:
            # Cut or refused, not a reply: the broker itself may be gone.
            self.liveness.suspect(self._clock.monotonic())
        if drop.was_up and self._up_at is not None:
            # Pings notice a dead link only after ping_interval + ping_timeout: updates may
            # have been lost since then, though not before the connection was up.
            link = self._link
            window = timedelta(seconds=link.ping_interval_s + link.ping_timeout_s)
            self._down_at = max(self._up_at, self._clock.now() - window)
        elif self._down_at is None:
            self._down_at = started_at
        self._first = False
        self._set_down(f"{drop.reason}; reconnecting in {drop.delay_s:.1f} s")

    async def _serve(self, ws: ClientConnection) -> None:
        pinger = asyncio.get_running_loop().create_task(self._watch_liveness(ws))
        read = 0
        try:
            async for frame in ws:
                self._on_frame(frame)
                read += 1
                if read % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        finally:
            # Cancelled until it is done: a stop must never wait on a pinger still pinging.
            while not pinger.done():
                pinger.cancel()
                await asyncio.wait({pinger}, timeout=0.1)

    async def _watch_liveness(self, ws: ClientConnection) -> None:
        """Ping every ``liveness_s`` (pings cost no request budget): a pong missing for that
        long makes the broker suspect from the ping's send time, so the outage watchdog
        probes at once and dates an outage that follows from then."""
        health = self.liveness
        if health is None:
            return
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.liveness_s)
                sent = self._clock.monotonic()
                pong = await ws.ping()
                try:
                    # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands
                    # as the pong arrives, and the pinger then pings on for ever.
                    async with asyncio.timeout(self.liveness_s):
                        await asyncio.shield(pong)
                except TimeoutError:
                    health.suspect(sent)
                    await pong
                health.clear_suspicion(self._clock.monotonic())

    async def _handshake(self, ws: ClientConnection) -> None:
        auth = {"key_id": self._key_id, "secret_key": self._secret}
        await ws.send(json.dumps({"action": "authenticate", "data": auth}))
        reply = await self._expect(ws, "authorization")
        status = str(reply.get("status", "")).lower()
        if status != "authorized":
            raise StreamRefused(
                "trade-update stream: Alpaca refused the API keys "
                f"({status or 'no status'}); check the keys and paper vs live"
            )
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        reply = await self._expect(ws, "listening")
        streams = reply.get("streams") or []
        if "trade_updates" not in streams:
            raise StreamRefused(f"trade-update stream: listen refused ({reply})")

    async def _expect(self, ws: ClientConnection, stream: str) -> dict[str, Any]:
        """Read frames until the reply on ``stream``; updates arriving first are kept."""
        while True:
            frame = await asyncio.wait_for(ws.recv(), self._link.open_timeout_s)
            message = self._read(frame)
            if message is None:
                continue
            if message.get("stream") == stream:
                data = message.get("data")
                return data if isinstance(data, dict) else {}
            self._dispatch(message)

    def _on_frame(self, frame: str | bytes) -> None:
        message = self._read(frame)
        if message is not None:
            self._dispatch(message)

    def _read(self, frame: str | bytes) -> dict[str, Any] | None:
        """The frame's JSON object, or None. Frames that are not JSON objects are skipped
        (Alpaca sends one-byte heartbeats, and its own clients skip them) unless they name
        the trade-updates stream: then they are a damaged update, rejected."""
        message = _parse(frame)
        if message is None:
            text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
            if "trade_updates" in text:
                self._reject(text, "a trade-updates frame that is not a JSON object")
            else:
                self.skipped += 1
        return message

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("stream") != "trade_updates":
            return  # authorization/listening echoes and anything new
        data = message.get("data")
        try:
            if not isinstance(data, dict):
                raise ValueError("data is not an object")
            update = convert.trade_update(data)
        except Exception as exc:  # nothing from the wire may stop the stream
            self._reject(message, str(exc) or type(exc).__name__)
            return
        self.health.messages += 1
        self.health.last_message_at = update.ts
        self.health.last_message_mono = self._clock.monotonic()
        self._queue.put_nowait(update)

    def _reject(self, raw: object, reason: str) -> None:
        # It may be a fill: the engine keeps it aside, alerts, and recovers from REST.
        self.health.malformed += 1
        log.warning("unreadable trade update (%s): %.300r", reason, raw)
        self._queue.put_nowait(RejectedUpdate(raw=raw, reason=reason, ts=self._clock.now()))

    def _set_up(self, first: bool) -> None:
        self._up.set()
        self.health.connected = True
        self.health.detail = "streaming trade updates"
        self._announce(True, "connected" if first else "reconnected; recovering missed fills")

    def _set_down(self, detail: str) -> None:
        self._up.clear()
        self.health.connected = False
        self.health.detail = detail
        log.warning("trade-update stream down: %s", detail)
        self._announce(False, detail)

    def _announce(self, up: bool, detail: str) -> None:
        # Transitions only; the first successful connection is not news.
        previous, self._announced = self._announced, up
        if previous == up or (previous is None and up) or self.on_connection is None:
            return
        try:
            self.on_connection(up, detail)
        except Exception:
            log.exception("on_connection callback failed")


def _refusal(exc: Exception) -> tuple[str, float | None] | None:
    return (str(exc), None) if isinstance(exc, StreamRefused) else None


def _parse(frame: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(frame, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None
