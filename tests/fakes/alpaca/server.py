"""``FakeAlpaca``: one aiohttp server on loopback speaking Alpaca's trading REST v2, the
historical bars endpoints, the trade-updates stream and the market-data v2 stream, all
backed by one ``SimExchange``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from engine.clock import Clock, SystemClock
from engine.domain import Bar, Tick
from engine.sim.exchange import SimExchange
from tests.fakes.alpaca.activities import ActivitiesApi
from tests.fakes.alpaca.bars import BarStore
from tests.fakes.alpaca.json_models import account_id
from tests.fakes.alpaca.knobs import FaultPlan, Knobs
from tests.fakes.alpaca.market_data import MarketDataApi
from tests.fakes.alpaca.rest import fault_middleware, reply, unprocessable
from tests.fakes.alpaca.streams import DataStreamHub, TradeStreamHub, credentials_check
from tests.fakes.alpaca.trading import TradingApi
from tests.fakes.alpaca.venue import AlwaysOpenCalendar, build_exchange

TRADE_STREAM_PATH = "/stream"
DATA_STREAM_PATHS = ("/v2/iex", "/v2/sip", "/v2/test")
SHUTDOWN_TIMEOUT_S = 2.0
CHAOS_FRAME_PATH = "/_chaos/trade_frame"
"""Not Alpaca's: ``POST {"frame": "<text>"}`` sends the text as it is, as one frame, to every
listening trade-updates client (``send_trade_frame`` from another process: the chaos suite's
poisoned updates). Authenticated like every route; the server listens on loopback only."""


class FakeAlpaca:
    """A local Alpaca for tests, benchmarks and demos; loopback only.

    ``exchange``: the venue (built commission-free from ``clock``, ``starting_cash`` and
    ``always_open`` when not given; pass your own for partial fills or persistence). The
    fake becomes the exchange's trade-update listener. ``history``: bars the bars endpoint
    serves besides everything pushed. All methods run on the event loop's thread.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        exchange: SimExchange | None = None,
        key_id: str = "FAKEKEYID",
        secret_key: str = "FAKESECRET",
        starting_cash: Decimal = Decimal(100_000),
        always_open: bool = False,
        history: Sequence[Bar] = (),
    ) -> None:
        if exchange is None:
            exchange = build_exchange(
                clock=clock or SystemClock(), starting_cash=starting_cash, always_open=always_open
            )
        elif always_open and not isinstance(exchange.calendar, AlwaysOpenCalendar):
            raise ValueError(
                "always_open=True needs an exchange built with AlwaysOpenCalendar "
                "(see tests.fakes.alpaca.build_exchange)"
            )
        self.exchange = exchange
        self.knobs = Knobs()
        self.requests: list[tuple[str, str]] = []
        self.order_bodies: list[dict[str, Any]] = []
        """The JSON body of every order submitted (``POST /v2/orders``), as received."""
        self.key_id = key_id
        self.secret_key = secret_key
        self._clock = clock or exchange.clock
        self._faults = FaultPlan(self.knobs)
        self._bars = BarStore(history)
        check = credentials_check(key_id, secret_key)
        self._check = check
        self._trade_hub = TradeStreamHub(check, self._faults)
        self._data_hub = DataStreamHub(check, self._faults)
        self._account = account_id(key_id)
        self._created_at = self._clock.now()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._host = ""
        self._port = 0
        exchange.set_listener(self._trade_hub.publish)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (a loopback address; anything else is refused) and ``port``
        (0 picks a free one; see ``base_url``)."""
        if self._runner is not None:
            raise RuntimeError("FakeAlpaca is already started")
        address = "127.0.0.1" if host == "localhost" else host
        try:
            loopback = ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"FakeAlpaca listens on loopback only, not {host!r}")
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            self._app(),
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, address, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host = address
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Release hung requests, close every stream, stop listening. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        self.thaw()
        await self._trade_hub.close_all()
        await self._data_hub.close_all()
        await runner.cleanup()

    async def __aenter__(self) -> FakeAlpaca:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        self._require_started()
        return self._port

    @property
    def base_url(self) -> str:
        """For ``TradingClient(url_override=...)`` and ``ALPACA_TRADING_URL``."""
        return f"http://{self._netloc()}"

    @property
    def data_url(self) -> str:
        """For ``StockHistoricalDataClient(url_override=...)`` and ``ALPACA_DATA_URL``."""
        return f"http://{self._netloc()}"

    @property
    def trade_stream_url(self) -> str:
        return f"ws://{self._netloc()}{TRADE_STREAM_PATH}"

    @property
    def data_stream_url(self) -> str:
        return f"ws://{self._netloc()}{DATA_STREAM_PATHS[0]}"

    # -- market data in ---------------------------------------------------------------------

    def push_bar(self, bar: Bar) -> None:
        """A minute bar: matched by the exchange at its close, stored for the bars endpoint,
        sent as a ``b`` frame to data-stream clients subscribed to its symbol."""
        self.exchange.on_bar(bar)
        self._bars.add(bar)
        self._data_hub.publish_bar(bar)

    def push_bars(self, bars: Sequence[Bar]) -> None:
        """Several minute bars at once, each as ``push_bar`` does, sent to data-stream
        clients in one frame (as Alpaca sends a minute's bars)."""
        for bar in bars:
            self.exchange.on_bar(bar)
            self._bars.add(bar)
        self._data_hub.publish_bars(bars)

    def push_trade(self, tick: Tick) -> None:
        """A trade print: matched by the exchange, sent as a ``t`` frame to subscribers."""
        self.exchange.on_price(tick.symbol, tick.price, tick.ts)
        self._data_hub.publish_trade(tick)

    # -- stream control ---------------------------------------------------------------------

    async def drop_trade_streams(self) -> None:
        """Abort every trade-updates connection (no closing handshake, like a network cut).
        Updates produced while no client listens are not replayed, as on Alpaca."""
        await self._trade_hub.drop_all()

    async def drop_data_streams(self) -> None:
        await self._data_hub.drop_all()

    def connected_trade_streams(self) -> int:
        """Trade-updates connections that are authenticated and listening, i.e. that will
        receive the next update."""
        return self._trade_hub.listening()

    def connected_data_streams(self) -> int:
        """Market-data connections that are authenticated."""
        return self._data_hub.authenticated()

    def data_subscriptions(self, channel: str = "bars") -> set[str]:
        """Symbols of ``channel`` (``trades``, ``quotes``, ``bars``...) that at least one
        authenticated data-stream client is subscribed to."""
        return self._data_hub.subscribed(channel)

    def send_trade_frame(self, message: object) -> None:
        """Send one frame on the trade-updates stream to every listening client: a mapping
        as JSON (``{"stream": "trade_updates", "data": {...}}`` for a hand-made update), a
        string as it is (a heartbeat, a damaged frame)."""
        frame = message if isinstance(message, str) else json.dumps(message)
        self._trade_hub.publish_frame(frame)

    def freeze(self) -> None:
        """Stop answering, as a SIGSTOPped process: REST requests are accepted but not
        answered, the trade stream reads nothing, answers no ping and sends nothing.
        ``thaw()`` resumes all of it where it stopped (as SIGCONT)."""
        self._faults.thawed.clear()

    def thaw(self) -> None:
        self._faults.thawed.set()

    @property
    def frozen(self) -> bool:
        return not self._faults.thawed.is_set()

    def market_now(self) -> datetime:
        """The venue's time: the clock, or the latest market data when that is later."""
        return max(self._clock.now(), self.exchange.last_ts)

    # -- internals --------------------------------------------------------------------------

    def _app(self) -> web.Application:
        stream_paths = frozenset((TRADE_STREAM_PATH, *DATA_STREAM_PATHS))
        app = web.Application(
            middlewares=[
                fault_middleware(
                    check=self._check,
                    faults=self._faults,
                    log=self.requests,
                    stopping=self._stopping,
                    stream_paths=stream_paths,
                )
            ]
        )
        trading = TradingApi(
            exchange=self.exchange,
            bars=self._bars,
            knobs=self.knobs,
            now=self.market_now,
            account=self._account,
            created_at=self._created_at,
            order_bodies=self.order_bodies,
        )
        app.add_routes(trading.routes())
        app.add_routes(ActivitiesApi(exchange=self.exchange, account=self._account).routes())
        app.add_routes(MarketDataApi(self._bars, self.market_now).routes())
        app.router.add_get(TRADE_STREAM_PATH, self._trade_hub.handle)
        app.router.add_post(CHAOS_FRAME_PATH, self._chaos_frame)
        for path in DATA_STREAM_PATHS:
            app.router.add_get(path, self._data_hub.handle)
        return app

    async def _chaos_frame(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        frame = body.get("frame") if isinstance(body, dict) else None
        if not isinstance(frame, str):
            raise unprocessable('the body must be {"frame": "<text to send>"}')
        listening = self._trade_hub.listening()
        self._trade_hub.publish_frame(frame)
        return reply({"sent_to": listening})

    def _netloc(self) -> str:
        self._require_started()
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def _require_started(self) -> None:
        # The addresses stay readable after stop(), for messages about the last run.
        if self._port == 0:
            raise RuntimeError("FakeAlpaca is not started: await start() first")
