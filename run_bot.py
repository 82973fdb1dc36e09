"""Entry point: `python run_bot.py --console` (no Discord needed) or the Discord bot."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from config import Settings, SettingsError, load_settings

log = logging.getLogger("run_bot")

NO_TOKEN = (
    "DISCORD_TOKEN is not set. Add DISCORD_TOKEN=<your bot token> to .env or the environment "
    "(see config/example.env and the README's Discord section), or run "
    "`python run_bot.py --console` to trade from this terminal instead."
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_bot.py",
        description="Trading agent controlled from Discord (or --console).",
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

    from bot.logs import configure_logging

    configure_logging(settings.log, console=args.console, log_dir=settings.storage.data_dir)
    for notice in settings.startup_notices():
        (log.warning if settings.mode == "live" else log.info)(notice)
        if args.console:
            print(notice, file=sys.stderr)

    if args.console:
        return asyncio.run(_console(settings))
    if settings.discord.token is None:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    print("The Discord transport is not built yet; use --console.", file=sys.stderr)
    return 2


async def _console(settings: Settings) -> int:
    from bot.console import run_console
    from engine.app import build_app

    app = await build_app(settings)
    return await run_console(app)


if __name__ == "__main__":
    sys.exit(main())
