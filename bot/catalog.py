"""The trader's commands, once: names, who may run them, what they take and what they do.

Discord's commands (``cogs.registered``), ``!help``, the console's ``!help`` and the usage
errors all render from ``COMMANDS``; a command that is not here does not exist. The argument
grammar the console and the cogs share lives here too (``halt_args``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, auto

from bot.checks import Access
from engine.commands import DEFAULT_AUDIT_ROWS


class Surface(Flag):
    DISCORD = auto()
    CONSOLE = auto()
    BOTH = DISCORD | CONSOLE


@dataclass(frozen=True, slots=True)
class HelpLine:
    args: str
    """What follows the command name on this line of the help (empty: nothing)."""
    what: str
    surface: Surface = Surface.BOTH


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    access: Access
    lines: tuple[HelpLine, ...]
    usage: str = ""
    """The argument syntax Discord's usage errors show (empty: the parameters')."""

    @property
    def description(self) -> str:
        """One sentence for Discord's slash-command list (100 characters at most)."""
        what = self.lines[0].what
        return (what[0].upper() + what[1:])[:100]


def _line(what: str, args: str = "", surface: Surface = Surface.BOTH) -> HelpLine:
    return HelpLine(args, what, surface)


COMMANDS: tuple[Command, ...] = (
    Command("status", Access.READ, (_line("state, equity, day P&L, health"),)),
    Command("positions", Access.READ, (_line("open positions, largest first"),)),
    Command("orders", Access.READ, (_line("open orders with age and status"),)),
    Command(
        "pnl",
        Access.READ,
        (
            _line("today's P&L with an equity chart", surface=Surface.DISCORD),
            _line("today's P&L; the equity chart as a PNG file", surface=Surface.CONSOLE),
        ),
    ),
    Command("trades", Access.READ, (_line("today's fills, newest first"),)),
    Command(
        "backtest",
        Access.READ,
        (_line("what a strategy would have done over the last days", "<strategy> [days]"),),
        usage="<strategy> [days]",
    ),
    Command(
        "audit",
        Access.CONTROL,
        (_line(f"the last n commands ({DEFAULT_AUDIT_ROWS}): who, when, what, result", "[n]"),),
        usage="[n]",
    ),
    Command(
        "halt",
        Access.CONTROL,
        (
            _line("stop trading now, close every position (no confirmation)", "[reason]"),
            _line("stop trading, keep positions", "keep [reason]"),
        ),
        usage="[keep] [reason]",
    ),
    Command(
        "resume",
        Access.CONTROL,
        (
            _line("back to ACTIVE (preview, then confirm)", surface=Surface.DISCORD),
            _line("lift a loss-limit halt (preview, then confirm)", "override", Surface.DISCORD),
            _line(
                "back to ACTIVE (override lifts a loss-limit halt)", "[override]", Surface.CONSOLE
            ),
        ),
        usage="[override | confirm <code>]",
    ),
    Command(
        "flatten",
        Access.CONTROL,
        (
            _line("close every position (preview, then confirm)", surface=Surface.DISCORD),
            _line("close every position, no confirmation", "now", Surface.DISCORD),
            _line("close every position (the console never asks)", "[now]", Surface.CONSOLE),
        ),
        usage="[now | confirm <code>]",
    ),
    Command("help", Access.READ, (_line("this list"),)),
    Command("quit", Access.CONTROL, (_line("stop the engine and exit", surface=Surface.CONSOLE),)),
)

BY_NAME = {command.name: command for command in COMMANDS}


def command(name: str) -> Command:
    return BY_NAME[name]


def help_lines(
    surface: Surface, allowed: frozenset[Access] = frozenset(Access)
) -> list[tuple[str, str]]:
    """(``name args``, what it does) for each line ``surface`` shows to someone with
    ``allowed``, in the catalog's order (no prefix)."""
    return [
        (f"{c.name} {line.args}".strip(), line.what)
        for c in COMMANDS
        if c.access in allowed
        for line in c.lines
        if line.surface & surface
    ]


def halt_args(words: str) -> tuple[bool, str]:
    """``keep [reason]`` -> (True, reason); anything else is the reason. The command service
    cleans the reason (``engine.commands.clean_reason``)."""
    first, _, rest = words.strip().partition(" ")
    if first.lower() == "keep":
        return True, rest
    return False, words
