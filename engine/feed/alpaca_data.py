"""Alpaca's real-time market data (v2 WebSocket, JSON), our own ``websockets`` client.

alpaca-py's ``StockDataStream`` speaks msgpack and busy-spins with nothing subscribed
(docs/library-facts.md); the JSON protocol is small: ``[{"T":"success","msg":"connected"}]`` on
connect, ``{"action":"auth","key","secret"}`` -> ``authenticated``, ``{"action":"subscribe",
"trades":[..],"bars":[..],"updatedBars":[..]}`` -> ``subscription``, then arrays of messages:
``t`` trade, ``b`` minute bar, ``u`` corrected minute bar, ``error`` with a code.

Error codes: 402 auth failed, 405 symbol limit, 408 v2 not enabled, 409 insufficient
subscription and 410 invalid subscribe action are fatal (``MarketDataFatal``, with what to
change): retrying cannot help. 406 connection limit means another connection uses this
account's one market-data slot: explained to the trader and retried slowly (60 s, doubling,
capped at 5 minutes). 407 slow client, 404 auth timeout, 400/401 protocol slips and 500
reconnect with backoff; 403 already authenticated is harmless. Every reconnect
re-authenticates and re-subscribes. Frames that are not JSON, or messages of the wrong shape,
are counted in ``health.malformed`` and skipped. A burst (a minute's bars for every symbol,
frames piled up while the loop was busy) lets the loop run every ``FEED_SLICE_S`` of work.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import ClientConnection

from engine.backoff import Backoff
from engine.clock import Clock
from engine.domain import Bar, Tick, parse_utc, to_decimal
from engine.errors import DomainError
from engine.feed.alpaca_history import AlpacaHistory, bar_from_json
from engine.feed.base import FEED_SLICE_S, FeedHealth, MarketDataSink, Turns
from engine.reconnect import Drop, Link, keep_connected

log = logging.getLogger(__name__)

ConnectionCallback = Callable[[bool, str], None]
Sleep = Callable[[float], Awaitable[None]]

CONNECTION_LIMIT_TEXT = (
    "another connection is using this account's market-data stream: Alpaca allows only one. "
    "Close the other bot, notebook or script using these API keys"
)

_FATAL = {
    402: "Alpaca refused the market-data keys (402 auth failed): check APCA_API_KEY_ID and "
    "APCA_API_SECRET_KEY",
    405: "too many symbols for this Alpaca data plan (405 symbol limit exceeded): shorten "
    "STRATEGY_SYMBOLS",
    408: "this account has no v2 market-data access (408): enable it in the Alpaca dashboard",
    409: "this Alpaca data plan does not include the requested feed (409 insufficient "
    "subscription): set ALPACA_DATA_FEED=iex or upgrade the plan",
    410: "the data feed refused the subscription (410 invalid subscribe action for this feed): "
    "check ALPACA_DATA_FEED and STRATEGY_SYMBOLS",
}
_SLOW_CLIENT = 407
_CONNECTION_LIMIT = 406
_ALREADY_AUTHENTICATED = 403


class MarketDataFatal(DomainError):
    """The market-data stream refused us for a reason retrying cannot fix."""


class _ServerError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg


class AlpacaDataFeed:
    """``MarketDataFeed`` on Alpaca's v2 stream: trades become ticks, minute bars bars."""

    def __init__(
        self,
        url: str,
        key_id: str,
        secret_key: str,
        symbols: Iterable[str],
        clock: Clock,
        *,
        history: AlpacaHistory | None = None,
        on_connection: ConnectionCallback | None = None,
        backoff: Backoff | None = None,
        limit_backoff: Backoff | None = None,
        updated_bars: bool = True,
        link: Link | None = None,
        sleep: Sleep = asyncio.sleep,
        slice_s: float = FEED_SLICE_S,
    ) -> None:
        self._link = link if link is not None else Link(url)
        """Timeouts and keepalive; ``url`` with the defaults unless given."""
        self._key_id = key_id
        self._secret = secret_key
        self.symbols = sorted({s.upper() for s in symbols})
        self._clock = clock
        self._history = history
        self.on_connection = on_connection
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=30.0)
        self.limit_backoff = limit_backoff or Backoff(base_s=60.0, cap_s=300.0, jitter=0.1)
        self._updated_bars = updated_bars
        self._sleep = sleep
        self.slice_s = slice_s
        """Longest stretch of the feed's own work before it lets the loop run (read when
        a connection starts serving)."""
        self._announced: bool | None = None
        self._cause_announced = False
        self._running = False
        self._first = True
        self.health = FeedHealth(detail="not started")

    async def history(self, symbol: str, end: datetime, limit: int) -> list[Bar]:
        if self._history is None:
            return []
        return await self._history.bars(symbol, end, limit)

    def close(self) -> None:
        """Release the history thread; ``run`` ends by cancellation."""
        if self._history is not None:
            self._history.close()

    async def run(self, sink: MarketDataSink) -> None:
        """Stream until cancelled; raises ``MarketDataFatal`` when Alpaca refuses for good."""
        if self._running:
            raise RuntimeError("AlpacaDataFeed.run is already running")
        self._running = True
        self._first = True
        try:
            await keep_connected(
                self._link,
                clock=self._clock,
                backoff=self.backoff,
                handshake=functools.partial(self._handshake, sink=sink),
                serve=functools.partial(self._serve, sink=sink),
                on_up=self._on_up,
                on_down=self._on_down,
                refusal=self._refusal,
                sleep=self._sleep,
            )
        finally:
            self._running = False
            self.health.connected = False

    def _on_up(self) -> None:
        if not self._first:
            self.health.reconnects += 1
        self._set_up(self._first)
        self._first = False

    def _on_down(self, drop: Drop) -> None:
        if drop.was_up and not drop.refused:
            self.limit_backoff.reset()
        self._first = False
        self._set_down(
            f"{drop.reason}; reconnecting in {drop.delay_s:.0f} s", announce=drop.refused
        )

    def _refusal(self, exc: Exception) -> tuple[str, float | None] | None:
        return self._on_server_error(exc) if isinstance(exc, _ServerError) else None

    async def _serve(self, ws: ClientConnection, *, sink: MarketDataSink) -> None:
        """Deliver every frame's data. A burst (a minute's bars for every symbol in one
        frame, or frames piled up while the loop was busy, which ``async for`` then hands
        over without waiting) lets the loop run every ``slice_s`` of the feed's work."""
        turns = Turns(self.slice_s)
        over = turns.over
        for_message = self._on_message
        async for frame in ws:
            for message in self._messages(frame):
                for_message(message, sink)
                if over():
                    await turns.give()

    # -- protocol -----------------------------------------------------------------------

    async def _handshake(self, ws: ClientConnection, *, sink: MarketDataSink) -> None:
        await self._expect(
            ws, sink, lambda m: m.get("T") == "success" and m.get("msg") == "connected"
        )
        await ws.send(json.dumps({"action": "auth", "key": self._key_id, "secret": self._secret}))
        await self._expect(
            ws, sink, lambda m: m.get("T") == "success" and m.get("msg") == "authenticated"
        )
        subscribe: dict[str, Any] = {
            "action": "subscribe",
            "trades": self.symbols,
            "bars": self.symbols,
        }
        if self._updated_bars:
            subscribe["updatedBars"] = self.symbols
        await ws.send(json.dumps(subscribe))
        await self._expect(ws, sink, lambda m: m.get("T") == "subscription")

    async def _expect(
        self,
        ws: ClientConnection,
        sink: MarketDataSink,
        wanted: Callable[[dict[str, Any]], bool],
    ) -> None:
        while True:
            frame = await asyncio.wait_for(ws.recv(), self._link.open_timeout_s)
            if any(wanted(m) for m in self._on_frame(frame, sink)):
                return

    def _on_frame(self, frame: str | bytes, sink: MarketDataSink) -> list[dict[str, Any]]:
        """Deliver a frame's data; return its control messages. Raises ``_ServerError``."""
        return [m for m in self._messages(frame) if self._on_message(m, sink)]

    def _messages(self, frame: str | bytes) -> list[Any]:
        """A frame's messages (an empty list for one that is not a JSON array: counted)."""
        try:
            messages = json.loads(frame, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            self._malformed("not JSON")
            return []
        if not isinstance(messages, list):
            self._malformed("frame is not an array")
            return []
        return messages

    def _on_message(self, message: Any, sink: MarketDataSink) -> bool:
        """Deliver a data message; True for a control message. Raises ``_ServerError``."""
        if not isinstance(message, dict) or not isinstance(message.get("T"), str):
            self._malformed("message without a type")
            return False
        kind = message["T"]
        if kind in ("t", "b", "u"):
            self._deliver(kind, message, sink)
            return False
        if kind == "error":
            code = message.get("code")
            if isinstance(code, int) and code == _ALREADY_AUTHENTICATED:
                return False
            raise _ServerError(code if isinstance(code, int) else 0, str(message.get("msg") or ""))
        return True

    def _deliver(self, kind: str, message: dict[str, Any], sink: MarketDataSink) -> None:
        symbol = message.get("S")
        try:
            if not isinstance(symbol, str) or not symbol:
                raise ValueError("no symbol")
            if kind == "t":
                tick = _tick(symbol, message)
                ts = tick.ts
                sink.on_tick(tick)
            else:
                bar = bar_from_json(symbol, message)
                ts = bar.ts
                sink.on_bar(bar)
        except (ValueError, TypeError, ArithmeticError) as exc:
            self._malformed(f"{kind} message: {exc}")
            return
        self.health.messages += 1
        self.health.last_message_at = ts
        self.health.last_message_mono = self._clock.monotonic()

    def _on_server_error(self, exc: _ServerError) -> tuple[str, float | None]:
        """What an error message means: raises for fatal codes, else (reason, delay)."""
        fatal = _FATAL.get(exc.code)
        if fatal is not None:
            self._set_down(fatal, announce=True)
            raise MarketDataFatal(fatal) from None
        if exc.code == _CONNECTION_LIMIT:
            delay = self.limit_backoff.next()
            return f"{CONNECTION_LIMIT_TEXT} (406 connection limit exceeded)", delay
        if exc.code == _SLOW_CLIENT:
            return "Alpaca dropped us for reading too slowly (407 slow client)", None
        return f"Alpaca market-data error {exc.code}: {exc.msg or 'no message'}", None

    # -- health -------------------------------------------------------------------------

    def _malformed(self, why: str) -> None:
        self.health.malformed += 1
        if self.health.malformed <= 10 or self.health.malformed % 1000 == 0:
            log.warning(
                "skipping malformed market data (%s); %d so far", why, self.health.malformed
            )

    def _set_up(self, first: bool) -> None:
        self.health.connected = True
        self.health.detail = f"streaming {len(self.symbols)} symbols"
        self._announce(True, "connected" if first else "reconnected and resubscribed")

    def _set_down(self, detail: str, *, announce: bool = False) -> None:
        """``announce``: tell the trader even when already down (a new, actionable cause);
        once per outage."""
        self.health.connected = False
        self.health.detail = detail
        log.warning("market data down: %s", detail)
        force = announce and not self._cause_announced
        self._cause_announced = self._cause_announced or announce
        self._announce(False, detail, force=force)

    def _announce(self, up: bool, detail: str, *, force: bool = False) -> None:
        previous, self._announced = self._announced, up
        if up:
            self._cause_announced = False
        quiet = previous == up or (previous is None and up)
        if (quiet and not force) or self.on_connection is None:
            return
        try:
            self.on_connection(up, detail)
        except Exception:
            log.exception("on_connection callback failed")


def _tick(symbol: str, raw: dict[str, Any]) -> Tick:
    ts = raw.get("t")
    if not isinstance(ts, str):
        raise ValueError("trade without a timestamp")
    tick = Tick(
        symbol=symbol.upper(),
        ts=parse_utc(ts, field="t"),
        price=to_decimal(raw.get("p"), field="p"),
        size=to_decimal(raw.get("s"), field="s"),
    )
    if tick.price <= 0 or tick.size < 0:
        raise ValueError("trade price must be positive and size not negative")
    return tick
