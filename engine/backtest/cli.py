"""``python run_bot.py backtest`` and ``python run_bot.py fetch-bars`` (docs/backtest.md).

Exit codes: 0 done, 1 the run failed (bad data, the API refused), 2 the request or the
settings are wrong. Problems are one line each, on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from config import Settings, SettingsError, load_settings

EXIT_FAILED = 1
EXIT_USAGE = 2


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError("must be a number, zero or more")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _symbols(text: str) -> list[str]:
    return [s.strip().upper() for s in text.split(",") if s.strip()]


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key.strip().lower(), value.strip()


def _grid(text: str) -> tuple[str, list[str]]:
    key, value = _assignment(text)
    values = [v.strip() for v in value.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    return key, values


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument("--data-dir", type=Path, help="the data dir (history cache, reports)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_bot.py", description="Backtests and history.")
    commands = parser.add_subparsers(dest="command", required=True)
    bt = commands.add_parser(
        "backtest",
        help="run strategies over stored bars",
        description="Run strategies over stored minute bars on the engine's own parts and "
        "write a report folder. Without --strategy: the configured strategies.",
    )
    bt.add_argument("--csv", type=Path, help="bars in the replay's CSV format")
    bt.add_argument("--symbols", type=_symbols, help="symbols to trade (comma separated)")
    bt.add_argument("--start", type=_day, help="first New York trading date to trade")
    bt.add_argument("--end", type=_day, help="last New York trading date to trade")
    bt.add_argument("--days", type=int, help="the last N trading days the data holds")
    bt.add_argument("--strategy", help="a configured strategy's name, or a class")
    bt.add_argument(
        "--param",
        type=_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a strategy parameter, as STRATEGY_<NAME> would set it (repeatable)",
    )
    bt.add_argument("--order-qty", type=_decimal, help="shares per order (STRATEGY_ORDER_QTY)")
    bt.add_argument("--cash", type=_decimal, help="starting cash (SIM_STARTING_CASH)")
    bt.add_argument("--slippage-bps", type=_decimal, help="SIM_SLIPPAGE_BPS")
    bt.add_argument("--commission-per-share", type=_decimal, help="SIM_COMMISSION_PER_SHARE")
    bt.add_argument("--commission-min", type=_decimal, help="SIM_COMMISSION_MIN")
    bt.add_argument("--max-fill-qty", type=_decimal, help="SIM_MAX_FILL_QTY (partial fills)")
    bt.add_argument("--out", type=Path, help="report folder (default: <data dir>/backtests/...)")
    wf = bt.add_argument_group("walk-forward")
    wf.add_argument(
        "--walk-forward",
        action="store_true",
        help="optimise on each training window, trade the next (needs --grid)",
    )
    wf.add_argument(
        "--grid",
        type=_grid,
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="values to try for a strategy parameter (repeatable)",
    )
    wf.add_argument("--train-days", type=int, default=20, help="training window (days)")
    wf.add_argument("--test-days", type=int, default=5, help="test window (days)")
    wf.add_argument(
        "--objective",
        choices=("sharpe", "sortino", "total_return", "cagr", "profit_factor"),
        default="sharpe",
        help="what the training window maximises (default: sharpe)",
    )
    wf.add_argument("--workers", type=int, help="processes (default: every core)")
    bt.add_argument(
        "--progress",
        choices=("auto", "none", "json"),
        default="auto",
        help="progress on stderr (auto), none, or JSON lines on stdout (for a parent process)",
    )
    _common(bt)
    fb = commands.add_parser(
        "fetch-bars",
        help="download minute bars into the history cache",
        description="Download minute bars from Alpaca's historical API into the history cache "
        "in the data dir; run it again after an interruption and it resumes.",
    )
    fb.add_argument("--symbols", type=_symbols, required=True, help="comma separated")
    fb.add_argument("--start", type=_day, required=True, help="first New York date")
    fb.add_argument("--end", type=_day, required=True, help="last New York date")
    fb.add_argument("--feed", choices=("iex", "sip"), help="default: ALPACA_DATA_FEED")
    fb.add_argument(
        "--page-size", type=int, default=10_000, help="bars per request (default: 10000)"
    )
    _common(fb)
    return parser


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse has printed its one-line reason
        return int(exc.code or 0) and EXIT_USAGE
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "backtest":
        return backtest(args, settings)
    from engine.backtest.fetch_cli import fetch_bars

    return fetch_bars(args, settings)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["storage"] = {"data_dir": args.data_dir}
    return load_settings(args.env_file, **overrides)


def backtest(args: argparse.Namespace, settings: Settings) -> int:
    from engine.backtest.metrics import compute
    from engine.backtest.plan import PlanError, Request, make_plan
    from engine.backtest.report import summary, text_summary, write_report
    from engine.backtest.runner import BacktestRunner
    from engine.feed.csv_bars import BarDataError

    request = Request(
        strategy=args.strategy,
        params=dict(args.param),
        symbols=args.symbols,
        order_qty=args.order_qty,
        csv=args.csv,
        start=args.start,
        end=args.end,
        days=args.days,
        cash=args.cash,
        slippage_bps=args.slippage_bps,
        commission_per_share=args.commission_per_share,
        commission_min=args.commission_min,
        max_fill_qty=args.max_fill_qty,
    )
    if args.days is not None and (args.days < 1 or args.start or args.end):
        return _refuse("--days is a number of days (at least 1), without --start and --end")
    if args.start and args.end and args.start > args.end:
        return _refuse("--start is after --end")
    try:
        plan = make_plan(settings, request)
    except PlanError as exc:
        return _refuse(str(exc))
    folder = args.out or default_folder(settings.storage.data_dir, plan.info.strategies)
    if args.walk_forward:
        from engine.backtest.walkforward_cli import run_walk_forward

        return run_walk_forward(
            settings,
            request,
            plan,
            grid=dict(args.grid),
            train_days=args.train_days,
            test_days=args.test_days,
            objective=args.objective,
            workers=args.workers,
            out=folder,
        )
    progress = Progress(plan.total_bars, args.progress)
    try:
        runner = BacktestRunner(
            plan.config, progress=progress, progress_every=max(1, plan.total_bars // 100)
        )
        result = runner.run(plan.source.bars(plan.span))
    except (BarDataError, ValueError) as exc:
        progress.clear()
        print(f"Cannot backtest: {exc}", file=sys.stderr)
        return EXIT_FAILED
    progress.done()
    metrics = compute(result)
    paths = write_report(folder, result, metrics, plan.info)
    text = text_summary(metrics, result)
    if args.progress == "json":
        final = {"done": summary(result, metrics, plan.info), "text": text, "report": str(folder)}
        print(json.dumps(final), flush=True)
        return 0
    print(f"Backtest of {plan.info.start} to {plan.info.end} on {plan.source.description}")
    print(text)
    print(f"Report: {folder} ({', '.join(p.name for p in paths.values())})")
    return 0


def default_folder(data_dir: Path, strategies: Sequence[Any]) -> Path:
    names = "-".join(str(s.get("name", "")) for s in strategies)[:60] or "backtest"
    return data_dir / "backtests" / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{names}"


def _refuse(message: str) -> int:
    for line in message.splitlines():
        print(f"Cannot backtest: {line}", file=sys.stderr)
    return EXIT_USAGE


class Progress:
    """A percentage of bars read: one line on stderr rewritten in place on a terminal, a
    line per 10 % otherwise; or JSON lines on stdout (``{"progress": 0.42}``)."""

    def __init__(self, total: int, mode: str, stream: IO[str] | None = None) -> None:
        self.total = max(1, total)
        self.mode = mode
        self.stream = stream or (sys.stdout if mode == "json" else sys.stderr)
        self._tty = self.stream.isatty()
        self._shown = -1

    def __call__(self, read: int) -> None:
        if self.mode == "none":
            return
        pct = min(99, read * 100 // self.total)
        step = pct if self._tty or self.mode == "json" else pct // 10 * 10
        if step <= self._shown:
            return
        self._shown = step
        if self.mode == "json":
            self.stream.write(json.dumps({"progress": round(read / self.total, 4)}) + "\n")
        elif self._tty:
            self.stream.write(f"\rbacktest: {pct}% ({read:,} of ~{self.total:,} bars)")
        else:
            self.stream.write(f"backtest: {step}% ({read:,} of ~{self.total:,} bars)\n")
        self.stream.flush()

    def done(self) -> None:
        if self.mode == "auto":
            end = "\r" if self._tty else ""
            self.stream.write(f"{end}backtest: 100%{' ' * 30 if self._tty else ''}\n")
            self.stream.flush()

    def clear(self) -> None:
        if self.mode == "auto" and self._tty and self._shown >= 0:
            self.stream.write("\n")
