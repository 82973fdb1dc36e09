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
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from engine.backoff import Backoff
from engine.broker.alpaca import convert
from engine.broker.port import RejectedUpdate, StreamGap, TradeUpdate
from engine.clock import Clock
from engine.feed.base import FeedHealth
from engine.health import BrokerHealth

log = logging.getLogger(__name__)

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
        open_timeout_s: float = 10.0,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 20.0,
        stable_after_s: float = 30.0,
        liveness: BrokerHealth | None = None,
        liveness_s: float = 1.0,
    ) -> None:
        self._url = url
        self._key_id = key_id
        self._secret = secret_key
        self._clock = clock
        self.on_connection = on_connection
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=30.0)
        self._open_timeout_s = open_timeout_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._stable_after_s = stable_after_s
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
        while True:
            item = await self._queue.get()
            if isinstance(item, _Stop):
                if self._stopping:
                    return
                continue
            yield item

    # -- the connection loop ------------------------------------------------------------

    async def _run(self, started_at: datetime) -> None:
        # The first connection reports no gap (the engine reconciles at start-up) unless it
        # failed: then everything from start() on may have been missed.
        down_at: datetime | None = None
        first = True
        while True:
            up_at: datetime | None = None
            up_mono = 0.0
            try:
                async with connect(
                    self._url,
                    open_timeout=self._open_timeout_s,
                    ping_interval=self._ping_interval_s,
                    ping_timeout=self._ping_timeout_s,
                    close_timeout=2,
                ) as ws:
                    await self._handshake(ws)
                    up_at, up_mono = self._clock.now(), self._clock.monotonic()
                    if down_at is not None:
                        self.gaps += 1
                        self._queue.put_nowait(StreamGap(down_at=down_at, up_at=up_at))
                        self.health.reconnects += 1
                    down_at = None
                    self._set_up(first)
                    first = False
                    pinger = asyncio.get_running_loop().create_task(self._watch_liveness(ws))
                    try:
                        async for frame in ws:
                            self._on_frame(frame)
                    finally:
                        pinger.cancel()
                        await asyncio.gather(pinger, return_exceptions=True)
                reason = "closed by the server"
            except asyncio.CancelledError:
                raise
            except StreamRefused as exc:
                reason = str(exc)
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if self.liveness is not None:
                    # Cut or refused, not a reply: the broker itself may be gone.
                    self.liveness.suspect(self._clock.monotonic())
            noticed = self._clock.now()
            if up_at is not None:
                # Pings notice a dead link only after ping_interval + ping_timeout: updates
                # may have been lost since then, though not before the connection was up.
                window = timedelta(seconds=self._ping_interval_s + self._ping_timeout_s)
                down_at = max(up_at, noticed - window)
                if self._clock.monotonic() - up_mono >= self._stable_after_s:
                    self.backoff.reset()
            elif down_at is None:
                down_at = started_at
            first = False
            delay = self.backoff.next()
            self._set_down(f"{reason}; reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay)

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
                    await asyncio.wait_for(asyncio.shield(pong), self.liveness_s)
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
            frame = await asyncio.wait_for(ws.recv(), self._open_timeout_s)
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


def _parse(frame: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(frame, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None
