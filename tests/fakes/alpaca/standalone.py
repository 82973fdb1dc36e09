"""The fake as a program: serve, replay the sample day as live bars, stop on a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from engine.clock import SystemClock, trading_day
from engine.domain import Bar, Tick
from engine.feed.csv_bars import load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH, ReplayFeed
from tests.fakes.alpaca.server import FakeAlpaca
from tests.fakes.alpaca.venue import build_exchange


def split_and_shift(bars: Sequence[Bar], now: datetime) -> tuple[list[Bar], list[Bar]]:
    """(history, replay): the last trading day in ``bars`` is replayed, everything before
    it is history. All bars move by one offset so the replayed day starts at ``now``'s
    minute; history stays in the past and the replay runs from now on."""
    if not bars:
        return [], []
    ordered = sorted(bars, key=lambda b: (b.ts, b.symbol))
    last_day = trading_day(ordered[-1].ts)
    first = next(b for b in ordered if trading_day(b.ts) == last_day)
    offset = now.astimezone(UTC).replace(second=0, microsecond=0) - first.ts
    moved = [replace(b, ts=b.ts + offset) for b in ordered]
    start = first.ts + offset
    return [b for b in moved if b.ts < start], [b for b in moved if b.ts >= start]


class _Pusher:
    """The replay's sink: every bar goes to the fake (exchange and data stream)."""

    def __init__(self, fake: FakeAlpaca) -> None:
        self._fake = fake

    def on_bar(self, bar: Bar) -> None:
        self._fake.push_bar(bar)

    def on_tick(self, tick: Tick) -> None:
        self._fake.push_trade(tick)

    async def settle(self, *, journaled: bool = True) -> None:
        await asyncio.sleep(0)

    def receiving(self, more: bool) -> None:
        return None


def banner(fake: FakeAlpaca) -> list[str]:
    return [
        f"fake Alpaca listening on {fake.base_url}",
        f"  trading REST:  {fake.base_url}",
        f"  data REST:     {fake.data_url}",
        f"  trade stream:  {fake.trade_stream_url}",
        f"  data stream:   {fake.data_stream_url}  (also /v2/sip, /v2/test)",
        f"  key id:        {fake.key_id}",
        f"  secret key:    {fake.secret_key}",
        "environment for the bot (paper mode):",
        "TRADING_MODE=paper",
        f"APCA_API_KEY_ID={fake.key_id}",
        f"APCA_API_SECRET_KEY={fake.secret_key}",
        f"ALPACA_TRADING_URL={fake.base_url}",
        f"ALPACA_TRADE_STREAM_URL={fake.trade_stream_url}",
        f"ALPACA_DATA_URL={fake.data_url}",
        f"ALPACA_DATA_STREAM_URL={fake.data_stream_url}",
    ]


async def serve(args: argparse.Namespace) -> int:
    history, replay_bars = split_and_shift(load_bars_csv(args.csv), datetime.now(UTC))
    exchange = build_exchange(
        clock=SystemClock(),
        starting_cash=args.starting_cash,
        always_open=args.always_open,
        max_fill_qty=args.max_fill_qty,
        slippage_bps=args.slippage_bps,
    )
    fake = FakeAlpaca(
        exchange=exchange,
        key_id=args.key_id,
        secret_key=args.secret_key,
        always_open=args.always_open,
        history=history,
    )
    fake.knobs.latency_ms = args.latency_ms
    fake.knobs.error_rate = args.error_rate
    fake.knobs.seed = args.seed
    fake.knobs.rate_limit_per_min = args.rate_limit_per_min
    await fake.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)
    feed = ReplayFeed(
        replay_bars,
        speed=args.speed,
        replay_from=replay_bars[0].ts if replay_bars else None,
    )
    for line in banner(fake):
        print(line, flush=True)
    symbols = ", ".join(sorted({b.symbol for b in replay_bars}))
    print(
        f"replaying {len(replay_bars)} bars of {symbols} at "
        f"{'full speed' if args.speed == 0 else f'{args.speed:g}x'} "
        f"({len(history)} history bars); Ctrl-C stops",
        flush=True,
    )
    replay = asyncio.create_task(feed.run(_Pusher(fake)))
    replay.add_done_callback(_report_replay_end)
    try:
        await stop.wait()
    finally:
        replay.cancel()
        await asyncio.gather(replay, return_exceptions=True)
        await fake.stop()
    print("fake Alpaca stopped", flush=True)
    return 0


def _report_replay_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    failure = task.exception()
    if failure is None:
        print("replay finished; still serving", flush=True)
    else:
        print(f"replay failed: {failure!r}; still serving", file=sys.stderr, flush=True)


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m tests.fakes.alpaca",
        description="A local Alpaca (REST v2, bars, trade and market-data streams) on loopback.",
        epilog=(
            "Test hook, not Alpaca's: POST /_chaos/trade_frame with the keys' headers and the "
            'body {"frame": "<text>"} sends that text, as it is, as one frame to every '
            "listening trade-updates client (a poisoned or damaged update; python -m "
            'tests.chaos uses it); the answer is {"sent_to": <clients>}.'
        ),
    )
    cli.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    cli.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    cli.add_argument("--latency-ms", type=_non_negative, default=0.0, help="delay per request")
    cli.add_argument("--error-rate", type=_rate, default=0.0, help="fraction answered 500")
    cli.add_argument("--seed", type=int, default=0, help="seed for --error-rate")
    cli.add_argument(
        "--rate-limit-per-min", type=int, default=0, help="enforce a request budget (0 = off)"
    )
    cli.add_argument(
        "--speed", type=_non_negative, default=60.0, help="replay speed; 60 = a bar a second"
    )
    cli.add_argument(
        "--always-open", action="store_true", help="every day is a 00:00-23:59:59 session"
    )
    cli.add_argument("--csv", type=Path, default=SAMPLE_BARS_PATH, help="minute bars to replay")
    cli.add_argument("--key-id", default="FAKEKEYID")
    cli.add_argument("--secret-key", default="FAKESECRET")
    cli.add_argument("--starting-cash", type=_decimal, default=Decimal(100_000))
    cli.add_argument(
        "--max-fill-qty", type=_decimal, default=Decimal(0), help="> 0 gives partial fills"
    )
    cli.add_argument("--slippage-bps", type=_decimal, default=Decimal(0))
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:  # port in use, non-loopback host, bad bar file
        print(f"fake Alpaca: {exc}", file=sys.stderr, flush=True)
        return 2
