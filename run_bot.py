"""Entry point.

    python run_bot.py --console      trade from this terminal on the configured broker
    python run_bot.py                the Discord bot (needs DISCORD_TOKEN)
    python run_bot.py healthcheck    exit 0 when the engine's liveness file is fresh
    python run_bot.py check-config   validate the settings, print them (secrets masked)
    python run_bot.py backtest ...   run strategies over stored bars (docs/backtest.md)
    python run_bot.py fetch-bars ... download minute bars into the history cache

Exit codes: 0 done, 1 could not start or failed (broker unreachable, bad data...), 2 the
configuration is wrong. ``--config-error-wait N`` (the container's command) holds a
configuration error for N seconds before exiting, so a restart policy does not loop on it.

SIGTERM and SIGINT stop gracefully: intake stops, in-flight broker calls finish (or time out),
the journal is flushed and closed, and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from config import Settings, SettingsError, load_settings, unknown_setting_names

log = logging.getLogger("run_bot")

EXIT_CONFIG = 2

NO_TOKEN = (
    "DISCORD_TOKEN is not set. Add DISCORD_TOKEN=<your bot token> to .env or the environment "
    "(see config/example.env and docs/discord.md), or run "
    "`python run_bot.py --console` to trade from this terminal instead."
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_bot.py",
        description="Trading agent controlled from Discord (or from this terminal with --console).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "healthcheck", "check-config"],
        default="run",
        help="run (default); healthcheck (exit 0 when the engine is alive); check-config "
        "(validate the settings and print them with secrets masked; exit 2 on errors)",
    )
    parser.add_argument(
        "--console", action="store_true", help="trade from this terminal (no Discord token)"
    )
    parser.add_argument("--data-dir", type=Path, help="where the SQLite journal lives")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument(
        "--config-error-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on a configuration error, wait this long (or until SIGTERM) before exiting 2, "
        "so a container restart policy retries slowly instead of in a loop",
    )
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["storage"] = {"data_dir": args.data_dir}
    return load_settings(args.env_file, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    if given[:1] in (["backtest"], ["fetch-bars"]):
        from engine.backtest.cli import main as backtest_main

        return backtest_main(given)
    args = parse_args(argv)
    if args.command == "check-config":
        return check_config(args)
    code = _run(args)
    if code == EXIT_CONFIG and args.config_error_wait > 0:
        asyncio.run(_hold(args.config_error_wait))
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load(args)
    except SettingsError as exc:
        for warning in unknown_setting_names(args.env_file):
            print(f"Warning: {warning}", file=sys.stderr)
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "healthcheck":
        return healthcheck(settings)

    from bot.logs import configure_logging, secrets_of

    try:
        configure_logging(
            settings.log,
            console=args.console,
            log_dir=settings.storage.data_dir,
            secrets=secrets_of(settings),
        )
    except OSError as exc:  # the console's log file lives in the data dir
        print(
            f"Cannot start: cannot write the log file in {settings.storage.data_dir} "
            f"({exc.strerror}): check that the data dir is writable",
            file=sys.stderr,
        )
        return 1
    for warning in unknown_setting_names(args.env_file):
        log.warning(warning)
        if args.console:
            print(f"Warning: {warning}", file=sys.stderr)
    for notice in settings.startup_notices():
        (log.warning if settings.mode == "live" else log.info)(notice)
        if args.console:
            print(notice, file=sys.stderr)

    if args.console:
        return asyncio.run(_console(settings))
    if settings.discord.token is None:
        print(NO_TOKEN, file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_discord(settings))


def check_config(args: argparse.Namespace) -> int:
    """Validate the settings as ``run`` would (a Discord token unless ``--console``), print
    every name that is no setting, then the effective settings with secrets masked."""
    for warning in unknown_setting_names(args.env_file):
        print(f"Warning: {warning}")
    try:
        settings = load(args)
    except SettingsError as exc:
        print(f"Configuration error:\n{exc}")
        return EXIT_CONFIG
    print("Effective settings (secrets show only as set / not set):")
    for name, value in settings.redacted_summary().items():
        print(f"  {name}={value}")
    for notice in settings.startup_notices():
        print(notice)
    if not args.console and settings.discord.token is None:
        print(f"Configuration error:\n  {NO_TOKEN}")
        return EXIT_CONFIG
    print(f"Settings OK for the {'console' if args.console else 'Discord bot'}.")
    return 0


async def _hold(seconds: float) -> None:
    """Keep a configuration error on screen and the process up for ``seconds`` (SIGTERM or
    SIGINT ends it at once): a container that exits at once is restarted in a loop."""
    stop = _stop_on_signals()  # before the line: whoever reads it may signal at once
    print(
        f"Waiting {seconds:g} s before exiting (--config-error-wait) so the restart policy "
        "does not loop: fix the settings (.env), then `docker compose up -d`.",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def healthcheck(settings: Settings) -> int:
    from engine.health import HEALTH_FILE, check_health_file

    ok, message = check_health_file(
        settings.storage.data_dir / HEALTH_FILE, settings.engine.health_stale_s, datetime.now(UTC)
    )
    print(message)
    return 0 if ok else 1


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _console(settings: Settings) -> int:
    from bot.console import run_console
    from engine.app import StartupError, build_app

    try:
        app = await build_app(settings, settle_heap=True)
    except StartupError as exc:
        print(f"Cannot start: {exc}", file=sys.stderr)
        return 1
    return await run_console(app, stop=_stop_on_signals())


async def _discord(settings: Settings) -> int:
    from bot.runner import run_discord
    from engine.app import build_app

    # handles SIGTERM/SIGINT itself
    return await run_discord(settings, build=lambda s: build_app(s, settle_heap=True))


if __name__ == "__main__":
    sys.exit(main())
