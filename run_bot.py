"""Entry point.

    python run_bot.py --console      trade from this terminal on the configured broker
    python run_bot.py                the Discord bot (needs DISCORD_TOKEN)
    python run_bot.py healthcheck    exit 0 when the engine's liveness file is fresh

SIGTERM and SIGINT stop gracefully: intake stops, in-flight broker calls finish (or time out),
the journal is flushed and closed, and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from config import Settings, SettingsError, load_settings

log = logging.getLogger("run_bot")

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
        choices=["run", "healthcheck"],
        default="run",
        help="run (default) or healthcheck (exit 0 when the engine is alive)",
    )
    parser.add_argument(
        "--console", action="store_true", help="trade from this terminal (no Discord token)"
    )
    parser.add_argument("--data-dir", type=Path, help="where the SQLite journal lives")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["storage"] = {"data_dir": args.data_dir}
    return load_settings(args.env_file, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load(args)
    except SettingsError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2

    if args.command == "healthcheck":
        return healthcheck(settings)

    from bot.logs import configure_logging, secrets_of

    configure_logging(
        settings.log,
        console=args.console,
        log_dir=settings.storage.data_dir,
        secrets=secrets_of(settings),
    )
    for notice in settings.startup_notices():
        (log.warning if settings.mode == "live" else log.info)(notice)
        if args.console:
            print(notice, file=sys.stderr)

    if args.console:
        return asyncio.run(_console(settings))
    if settings.discord.token is None:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    return asyncio.run(_discord(settings))


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
        app = await build_app(settings)
    except StartupError as exc:
        print(f"Cannot start: {exc}", file=sys.stderr)
        return 1
    return await run_console(app, stop=_stop_on_signals())


async def _discord(settings: Settings) -> int:
    from bot.runner import run_discord

    return await run_discord(settings)  # handles SIGTERM/SIGINT itself


if __name__ == "__main__":
    sys.exit(main())
