"""``python -m tests.chaos [--kills N] [--seed S] [--only SCENARIO ...]``"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.chaos.scenarios import (
    Result,
    discord_outage,
    flatten_kills,
    full_disk,
    hung_broker,
    poisoned_updates,
    random_kills,
)

SCENARIOS = ("kills", "flatten", "poison", "disk", "hang", "discord")


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Issue 11's chaos suite: real faults against real processes, one row each.",
    )
    cli.add_argument("--kills", type=int, default=30, help="random SIGKILLs while trading")
    cli.add_argument("--flatten-kills", type=int, default=10, help="SIGKILLs during !flatten")
    cli.add_argument("--hangs", type=int, default=3, help="broker SIGSTOPs")
    cli.add_argument(
        "--disk",
        choices=("auto", "tmpfs", "fsize"),
        default="auto",
        help="full disk: a small tmpfs, an injected write failure (RLIMIT_FSIZE), or tmpfs "
        "where it can be mounted (default)",
    )
    cli.add_argument(
        "--discord-outage-s", type=float, default=8.0, help="length of the Discord outage"
    )
    cli.add_argument("--seed", type=int, default=None, help="seed for the random delays")
    cli.add_argument(
        "--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), help="scenarios to run"
    )
    cli.add_argument("--keep", type=Path, default=None, help="work in this dir and keep it")
    return cli


HEADER = ("scenario", "runs", "duplicates", "lost fills", "phantom fills", "cash diff", "time")


def row(r: Result) -> tuple[str, ...]:
    t = r.tally
    return (
        r.scenario,
        str(r.runs),
        str(t.duplicates),
        str(t.lost),
        str(t.phantom),
        f"${t.cash_diff:.2f}",
        r.timing,
        "pass" if r.passed else "FAIL",
    )


def table(results: Sequence[Result]) -> str:
    lines = ["| " + " | ".join((*HEADER, "result")) + " |", "|" + "---|" * (len(HEADER) + 1)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return "\n".join(lines)


async def run(args: argparse.Namespace, work: Path) -> list[Result]:
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"chaos: seed {seed}, work dir {work}", flush=True)
    rng = random.Random(seed)
    results: list[Result] = []
    for name in args.only:
        began = time.monotonic()
        try:
            result = await _one(name, args, rng, work)
        except Exception as exc:  # a run that could not be driven is a failed row
            result = Result(name, 0)
            result.check(False, f"{type(exc).__name__}: {exc}")
        print(
            f"  {result.scenario}: {'pass' if result.passed else 'FAIL'} in "
            f"{time.monotonic() - began:.0f} s; {result.detail}",
            flush=True,
        )
        for problem in [*result.checks, *result.tally.notes[:10]]:
            print(f"    - {problem}", flush=True)
        results.append(result)
    return results


async def _one(name: str, args: argparse.Namespace, rng: random.Random, work: Path) -> Result:
    if name == "kills":
        return await random_kills(args.kills, rng, work)
    if name == "flatten":
        return await flatten_kills(args.flatten_kills, rng, work)
    if name == "poison":
        return await poisoned_updates(rng, work)
    if name == "disk":
        return await full_disk(rng, work, args.disk)
    if name == "hang":
        return await hung_broker(args.hangs, rng, work)
    return await discord_outage(rng, outage_s=args.discord_outage_s)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the alert router's own warnings: not here
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(run(args, args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            results = asyncio.run(run(args, Path(tmp)))
    print(table(results), flush=True)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
