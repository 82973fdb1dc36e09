"""The two WebSocket endpoints: trade updates (``/stream``) and market data (``/v2/iex``).

Each connection has one sender task fed by a queue, so control replies and pushed data
leave in the order they were produced and nothing on the event loop waits for a client.
A trade update is encoded by the sender, when it leaves, not when the venue produces it: a
close-all of 2,000 positions makes 6,000 updates inside its request, and encoding them there
would hold its answer back, which Alpaca (whose stream is not its REST server) does not do.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import WSMsgType, web

from engine.domain import Bar, Tick
from engine.sim.models import TradeUpdateRecord
from tests.fakes.alpaca.json_models import bar_message, trade_message, trade_update_json
from tests.fakes.alpaca.knobs import FaultPlan

SLOW_CLIENT_FRAMES = 10_000
YIELD_EVERY = 16
"""Frames a sender sends between two turns given to the rest of the fake (its REST answers):
a burst of thousands would otherwise hold them all back."""
CLOSE_TIMEOUT_S = 2.0
DONE = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)
DATA_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
Credentials = Callable[[object, object], bool]


def credentials_check(key_id: str, secret_key: str) -> Credentials:
    def check(key: object, secret: object) -> bool:
        return (
            isinstance(key, str)
            and isinstance(secret, str)
            and hmac.compare_digest(key, key_id)
            and hmac.compare_digest(secret, secret_key)
        )

    return check


class Connection:
    """One accepted WebSocket with its ordered outbox."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        binary: bool,
        thawed: asyncio.Event | None = None,
    ) -> None:
        self.ws = ws
        self._thawed = thawed
        self.authenticated = False
        self._transport = request.transport
        self._binary = binary
        self._outbox: asyncio.Queue[str | _Update | None] = asyncio.Queue()
        self._closing = False  # a clean close is queued: nothing more is accepted
        self._aborted = False
        self._sender = asyncio.create_task(self._send_loop())

    @property
    def live(self) -> bool:
        """Authenticated, neither dropped nor closing: it gets what is published next."""
        return self.authenticated and not (self._aborted or self._closing)

    @property
    def backlog(self) -> int:
        return self._outbox.qsize()

    def send(self, message: object) -> None:
        self.send_text(json.dumps(message, separators=(",", ":")))

    def send_text(self, text: str | _Update) -> None:
        if not (self._closing or self._aborted):
            self._outbox.put_nowait(text)

    def close_after_sending(self) -> None:
        """Send what is queued, then close the connection cleanly."""
        if not (self._closing or self._aborted):
            self._outbox.put_nowait(None)
            self._closing = True

    def discard_backlog(self) -> None:
        while not self._outbox.empty():
            self._outbox.get_nowait()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake, like a network failure."""
        self._aborted = True
        if self._transport is not None:
            self._transport.abort()

    async def finish(self) -> None:
        if self._closing and not self._aborted and not self._sender.done():
            # Let a requested close complete its handshake; it is bounded by the ws timeout.
            await asyncio.wait({self._sender}, timeout=CLOSE_TIMEOUT_S * 2)
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)

    async def _send_loop(self) -> None:
        sent = 0
        while True:
            item = await self._outbox.get()
            if item is None:
                await self.ws.close()
                return
            if self._thawed is not None:
                await self._thawed.wait()
            text = item if isinstance(item, str) else item.text()
            try:
                if self._binary:
                    await self.ws.send_bytes(text.encode())
                else:
                    await self.ws.send_str(text)
            except ConnectionError:
                return
            sent += 1
            if sent % YIELD_EVERY == 0:
                await asyncio.sleep(0)


class _Update:
    """A trade update as JSON text, encoded once, the first time a sender needs it (the
    record is frozen: what is sent is what the venue produced)."""

    __slots__ = ("_record", "_text")

    def __init__(self, record: TradeUpdateRecord) -> None:
        self._record = record
        self._text: str | None = None

    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps(trade_update_json(self._record), separators=(",", ":"))
        return self._text


async def _accept(request: web.Request, *, autoping: bool = True) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT_S, max_msg_size=1 << 20, autoping=autoping)
    await ws.prepare(request)
    return ws


def _decode(data: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None


class TradeStreamHub:
    """``/stream``: authenticate, listen to ``trade_updates``, then every venue update.
    While frozen (``FaultPlan.thawed`` cleared) it reads nothing, answers no ping and sends
    nothing, as a stopped process."""

    def __init__(self, check: Credentials, faults: FaultPlan) -> None:
        self._check = check
        self._faults = faults
        self._knobs = faults.knobs
        self._connections: dict[Connection, bool] = {}  # -> listening to trade_updates

    def listening(self) -> int:
        return sum(1 for conn, on in self._connections.items() if on and conn.live)

    def publish(self, update: TradeUpdateRecord) -> None:
        """The exchange's listener: fan one update out to every listening connection."""
        if not self._connections:
            return
        frame = _Update(update)
        for conn, on in self._connections.items():
            if on and conn.live:
                conn.send_text(frame)

    def publish_frame(self, frame: str) -> None:
        """Send ``frame`` as it is to every listening connection (tests: heartbeats, damaged
        or hand-made updates)."""
        for conn, on in self._connections.items():
            if on and conn.live:
                conn.send_text(frame)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = await _accept(request, autoping=False)
        conn = Connection(request, ws, binary=True, thawed=self._faults.thawed)
        self._connections[conn] = False
        try:
            while True:
                msg = await ws.receive()
                await self._faults.until_thawed()
                if msg.type in DONE:
                    break
                if msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_message(conn, msg.data)
        finally:
            self._connections.pop(conn, None)
            await conn.finish()
        return ws

    def _on_message(self, conn: Connection, data: str | bytes) -> None:
        message = _decode(data)
        action = None if message is None else message.get("action")
        payload = message.get("data") if message is not None else None
        payload = payload if isinstance(payload, dict) else {}
        if message is None or action not in ("authenticate", "auth", "listen"):
            conn.send({"stream": "error", "data": {"error": "invalid syntax"}})
        elif action in ("authenticate", "auth"):
            key = payload.get("key_id", message.get("key"))
            secret = payload.get("secret_key", message.get("secret"))
            ok = not self._knobs.auth_fail and self._check(key, secret)
            status = "authorized" if ok else "unauthorized"
            conn.send(
                {"stream": "authorization", "data": {"status": status, "action": "authenticate"}}
            )
            conn.authenticated = ok
            if not ok:
                conn.close_after_sending()
        elif not conn.authenticated:
            conn.send(
                {"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}}
            )
        else:
            streams = payload.get("streams")
            wanted = streams if isinstance(streams, list) else []
            on = "trade_updates" in wanted
            self._connections[conn] = on
            conn.send({"stream": "listening", "data": {"streams": ["trade_updates"] if on else []}})

    async def drop_all(self) -> None:
        for conn in list(self._connections):
            conn.abort()

    async def close_all(self) -> None:
        for conn in list(self._connections):
            conn.close_after_sending()


class _Subscriber:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.channels: dict[str, set[str]] = {name: set() for name in DATA_CHANNELS}

    def wants(self, channel: str, symbol: str) -> bool:
        subscribed = self.channels[channel]
        return symbol in subscribed or "*" in subscribed

    def reply(self) -> dict[str, Any]:
        lists = {name: sorted(symbols) for name, symbols in self.channels.items()}
        # Alpaca mirrors the trade subscription into corrections and cancel errors.
        return {
            "T": "subscription",
            **lists,
            "corrections": lists["trades"],
            "cancelErrors": lists["trades"],
        }


class DataStreamHub:
    """``/v2/{iex,sip,test}``: Alpaca's market-data v2 protocol, JSON text frames."""

    def __init__(self, check: Credentials, faults: FaultPlan) -> None:
        self._check = check
        self._faults = faults
        self._knobs = faults.knobs
        self._subscribers: dict[Connection, _Subscriber] = {}
        self._trade_ids = 0

    def authenticated(self) -> int:
        return sum(1 for conn in self._subscribers if conn.live)

    def subscribed(self, channel: str) -> set[str]:
        """Symbols of ``channel`` (``trades``, ``bars``...) some authenticated client wants."""
        found: set[str] = set()
        for sub in self._subscribers.values():
            if sub.conn.live:
                found |= sub.channels[channel]
        return found

    def publish_bar(self, bar: Bar) -> None:
        self._publish("bars", bar.symbol, bar_message(bar))

    def publish_bars(self, bars: Sequence[Bar]) -> None:
        """Several bars in one frame, as Alpaca sends a minute's bars: to each subscriber,
        those of its symbols."""
        for sub in list(self._subscribers.values()):
            messages = [bar_message(b) for b in bars if sub.wants("bars", b.symbol)]
            if sub.conn.live and messages:
                sub.conn.send(messages)

    def publish_trade(self, tick: Tick) -> None:
        self._trade_ids += 1
        self._publish("trades", tick.symbol, trade_message(tick, self._trade_ids))

    def _publish(self, channel: str, symbol: str, message: dict[str, Any]) -> None:
        text = json.dumps([message], separators=(",", ":"))
        for sub in list(self._subscribers.values()):
            if not (sub.conn.live and sub.wants(channel, symbol)):
                continue
            if sub.conn.backlog >= SLOW_CLIENT_FRAMES:
                sub.conn.discard_backlog()
                sub.conn.send([{"T": "error", "code": 407, "msg": "slow client"}])
                sub.conn.close_after_sending()
                continue
            kind = self._faults.take_malformed()
            sub.conn.send_text(text if kind is None else malformed_frame(kind, message))

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = await _accept(request)
        conn = Connection(request, ws, binary=False)
        sub = _Subscriber(conn)
        self._subscribers[conn] = sub
        conn.send([{"T": "success", "msg": "connected"}])
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + self._knobs.auth_timeout_s
        try:
            while True:
                timeout = None
                if deadline is not None and not conn.authenticated:
                    timeout = max(0.0, deadline - loop.time())
                try:
                    msg = await ws.receive(timeout)
                except TimeoutError:
                    conn.send([{"T": "error", "code": 404, "msg": "auth timeout"}])
                    conn.close_after_sending()
                    deadline = None
                    continue
                if msg.type in DONE:
                    break
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_message(sub, request.path, msg.data)
        finally:
            self._subscribers.pop(conn, None)
            await conn.finish()
        return ws

    def _on_message(self, sub: _Subscriber, path: str, data: str | bytes) -> None:
        conn = sub.conn
        message = _decode(data)
        action = None if message is None else message.get("action")
        if message is None or action not in ("auth", "subscribe", "unsubscribe"):
            conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
        elif action == "auth":
            self._auth(conn, path, message)
        elif not conn.authenticated:
            conn.send([{"T": "error", "code": 401, "msg": "not authenticated"}])
        else:
            self._subscribe(sub, message, add=action == "subscribe")

    def _auth(self, conn: Connection, path: str, message: dict[str, Any]) -> None:
        knobs = self._knobs
        if conn.authenticated:
            conn.send([{"T": "error", "code": 403, "msg": "already authenticated"}])
            return
        if knobs.auth_fail or not self._check(message.get("key"), message.get("secret")):
            failure = [{"T": "error", "code": 402, "msg": "auth failed"}]
        elif knobs.connection_limit:
            failure = [{"T": "error", "code": 406, "msg": "connection limit exceeded"}]
        elif knobs.insufficient_subscription and path.endswith("/sip"):
            failure = [{"T": "error", "code": 409, "msg": "insufficient subscription"}]
        else:
            conn.authenticated = True
            conn.send([{"T": "success", "msg": "authenticated"}])
            return
        conn.send(failure)
        conn.close_after_sending()

    def _subscribe(self, sub: _Subscriber, message: dict[str, Any], *, add: bool) -> None:
        changes: dict[str, set[str]] = {}
        for channel in DATA_CHANNELS:
            symbols = message.get(channel, [])
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                sub.conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                return
            changes[channel] = {s.strip().upper() if s != "*" else s for s in symbols}
        updated = {
            channel: (sub.channels[channel] | new) if add else (sub.channels[channel] - new)
            for channel, new in changes.items()
        }
        limit = self._knobs.symbol_limit
        if limit > 0 and len(set().union(*updated.values()) - {"*"}) > limit:
            sub.conn.send([{"T": "error", "code": 405, "msg": "symbol limit exceeded"}])
            return
        sub.channels = updated
        sub.conn.send([sub.reply()])

    async def drop_all(self) -> None:
        for conn in list(self._subscribers):
            conn.abort()

    async def close_all(self) -> None:
        for conn in list(self._subscribers):
            conn.close_after_sending()


def malformed_frame(kind: str, message: dict[str, Any]) -> str:
    """A broken version of ``message`` (see ``Knobs.malformed_data_frames``)."""
    symbol = message.get("S", "?")
    if kind == "invalid_json":
        return json.dumps([message])[:-7]
    if kind == "not_an_array":
        return json.dumps(message)
    if kind == "missing_fields":
        return json.dumps([{"T": "b", "S": symbol, "o": 1.0, "t": message.get("t")}])
    return json.dumps(
        [
            {
                "T": "b",
                "S": symbol,
                "o": "abc",
                "h": None,
                "l": "1.0.0",
                "c": "NaN",
                "v": "many",
                "t": message.get("t"),
                "n": 1,
                "vw": 1.0,
            }
        ]
    )
