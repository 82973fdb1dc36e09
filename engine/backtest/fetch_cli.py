"""``run_bot.py fetch-bars``: the command around ``engine.backtest.fetch``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from config import Settings
from engine.backtest.fetch import PAGE_LIMIT, BarsClient, FetchReport, fetch_history
from engine.backtest.history import HistoryCache, day_span
from engine.broker.alpaca.factory import history_client
from engine.broker.resilience import RequestBudget
from engine.errors import BrokerError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fetch_bars(args: argparse.Namespace, settings: Settings) -> int:
    alpaca = settings.alpaca
    if args.start > args.end:
        return _refuse("--start is after --end")
    if not 1 <= args.page_size <= PAGE_LIMIT:
        return _refuse(f"--page-size must be within 1..{PAGE_LIMIT:,} (Alpaca's largest page)")
    if alpaca.api_key is None or alpaca.secret_key is None:
        return _refuse(
            "APCA_API_KEY_ID and APCA_API_SECRET_KEY are required: minute bars come from "
            "Alpaca's historical market-data API"
        )
    feed = args.feed or alpaca.data_feed
    cache = HistoryCache(settings.storage.data_dir, feed)
    client = BarsClient(
        lambda: history_client(alpaca), feed=feed, timeout_s=alpaca.request_timeout_s
    )
    budget = RequestBudget(per_minute=alpaca.max_requests_per_minute, monotonic=time.monotonic)
    report = FetchReport()

    def on_page(symbol: str, bars: int, total: int) -> None:
        report.pages += 1
        print(f"{symbol}: page of {bars:,} bars stored ({total:,} so far)", file=sys.stderr)

    span = day_span(args.start, args.end)
    try:
        done = asyncio.run(
            fetch_history(
                client,
                cache,
                args.symbols,
                span,
                budget=budget,
                page_limit=args.page_size,
                on_page=on_page,
            )
        )
    except BrokerError as exc:
        print(
            f"Cannot fetch bars: {exc}. The {report.pages} pages stored are kept: run the same "
            "command again to fetch the rest.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            f"Interrupted after {report.pages} pages; run the same command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        client.close()
    for symbol in done.complete:
        print(f"{symbol}: already in the cache from {args.start} to {args.end}")
    for symbol, bars in done.bars.items():
        print(f"{symbol}: {bars:,} bars fetched")
    print(f"History cache: {cache.root} ({done.pages} pages fetched)")
    return 0


def _refuse(message: str) -> int:
    print(f"Cannot fetch bars: {message}", file=sys.stderr)
    return EXIT_USAGE
