"""Build the Alpaca broker and market-data feed from settings (paper or live)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.trading.client import TradingClient

from config import AlpacaSettings, Settings
from engine.broker.alpaca.adapter import AlpacaBroker
from engine.broker.alpaca.rest import harden_rest_client
from engine.broker.alpaca.trade_stream import TradeUpdateStream
from engine.broker.resilience import CircuitBreaker, RequestBudget
from engine.clock import Clock

if TYPE_CHECKING:
    from engine.feed.alpaca_data import AlpacaDataFeed

PAPER_TRADE_STREAM = "wss://paper-api.alpaca.markets/stream"
LIVE_TRADE_STREAM = "wss://api.alpaca.markets/stream"
DATA_STREAM = "wss://stream.data.alpaca.markets/v2/{feed}"


def build_alpaca(settings: Settings, clock: Clock) -> tuple[AlpacaBroker, AlpacaDataFeed]:
    """The broker (REST + trade-update stream) and the market-data feed for ``paper`` or
    ``live`` mode. Nothing connects until ``broker.connect()`` / ``feed.run()``. Set
    ``broker.stream.on_connection`` and ``feed.on_connection`` to hear about drops."""
    # The feeds use this package's REST helpers, and importing any module of the package runs
    # its __init__, which imports this one: imported here, either side may be imported first.
    from engine.feed.alpaca_data import AlpacaDataFeed
    from engine.feed.alpaca_history import AlpacaHistory

    if settings.mode not in ("paper", "live"):
        raise ValueError(f"build_alpaca needs paper or live mode, not {settings.mode!r}")
    alpaca = settings.alpaca
    if alpaca.api_key is None or alpaca.secret_key is None:
        raise ValueError("the Alpaca API key id and secret key are required")
    key_id = alpaca.api_key.get_secret_value()
    secret = alpaca.secret_key.get_secret_value()
    paper = settings.mode != "live"
    timeout = alpaca.request_timeout_s
    trading_url = _strip(alpaca.trading_url)

    def trading_client() -> TradingClient:
        client = TradingClient(key_id, secret, paper=paper, raw_data=True, url_override=trading_url)
        harden_rest_client(client, timeout)
        return client

    def data_client() -> StockHistoricalDataClient:
        return history_client(alpaca)

    per_minute = alpaca.max_requests_per_minute
    broker = AlpacaBroker(
        client_factory=trading_client,
        stream=TradeUpdateStream(trade_stream_url(alpaca, live=not paper), key_id, secret, clock),
        clock=clock,
        timeout_s=timeout,
        breaker=CircuitBreaker(
            failures=alpaca.breaker_failures,
            reset_s=alpaca.breaker_reset_s,
            monotonic=clock.monotonic,
        ),
        # ALPACA_MAX_REQUESTS_PER_MINUTE (<= 200, Alpaca's limit) in any 60 s window.
        budget=RequestBudget(per_minute=per_minute, monotonic=clock.monotonic),
        first_connect_wait_s=min(timeout, 5.0),
    )
    feed = AlpacaDataFeed(
        data_stream_url(alpaca),
        key_id,
        secret,
        settings.strategy.traded_symbols,
        clock,
        history=AlpacaHistory(data_client, feed=alpaca.data_feed, timeout_s=timeout),
    )
    return broker, feed


def history_client(alpaca: AlpacaSettings) -> StockHistoricalDataClient:
    """alpaca-py's historical market-data client for these settings: raw JSON, every request
    bounded by ``ALPACA_REQUEST_TIMEOUT_S``, no blocking retries. Call it on a worker thread
    (its calls block). ``ValueError`` without API keys."""
    if alpaca.api_key is None or alpaca.secret_key is None:
        raise ValueError("the Alpaca API key id and secret key are required")
    client = StockHistoricalDataClient(
        alpaca.api_key.get_secret_value(),
        alpaca.secret_key.get_secret_value(),
        raw_data=True,
        url_override=_strip(alpaca.data_url),
    )
    harden_rest_client(client, alpaca.request_timeout_s)
    return client


def trade_stream_url(alpaca: AlpacaSettings, *, live: bool) -> str:
    """``ALPACA_TRADE_STREAM_URL``, else ``/stream`` on ``ALPACA_TRADING_URL``'s host,
    else Alpaca's paper or live address."""
    if alpaca.trade_stream_url:
        return alpaca.trade_stream_url
    if alpaca.trading_url:
        parts = urlsplit(alpaca.trading_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/stream", "", ""))
    return LIVE_TRADE_STREAM if live else PAPER_TRADE_STREAM


def data_stream_url(alpaca: AlpacaSettings) -> str:
    return alpaca.data_stream_url or DATA_STREAM.format(feed=alpaca.data_feed)


def _strip(url: str | None) -> str | None:
    # alpaca-py appends "/v2/..." to the base: a trailing slash would double it.
    return url.rstrip("/") if url else None
