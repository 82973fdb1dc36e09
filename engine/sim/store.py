"""Crash-safe persistence for the simulator: an append-only file of JSON lines.

The first line holds the whole state. Each commit then appends ONE line holding what changed
since the line before: the account's scalars (cash, equity, day trades per day: small) with
only the positions, last quotes and opening days that changed, the orders that changed and
the executions that are new. The cost of a commit follows what changed, not the number of
symbols or the order history. Reading replays the lines: each account delta is laid over the
state so far, the last version of each order wins, executions accumulate. A process killed
mid-append leaves a torn last line, which is dropped (and cut from the file, so the next
append starts a clean line): the state is then exactly that of the previous commit. Every
``compact_every`` commits the file is rewritten as a single full line (temp file +
``os.replace``). Files written before version 3 (a full account on every line) still load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

STATE_VERSION = 3
READABLE_VERSIONS = frozenset({2, 3})


@dataclass
class StoredState:
    account: dict[str, Any]
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Order records by id, latest version."""
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Execution records by id, in the order they happened."""


class SimStateStore:
    def __init__(self, path: Path, *, compact_every: int = 2000) -> None:
        self.path = path
        self._compact_every = compact_every
        self._lines = 0
        self._made_dir = False
        self._handle: BinaryIO | None = None
        self._size = 0
        """Bytes of the file known whole while it is open for appending."""

    def load(self) -> StoredState | None:
        """The committed state, or None when there is no file. Raises ValueError when the
        file is damaged anywhere but in its last line."""
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        state: StoredState | None = None
        account = _Account()
        good = 0  # bytes of the file up to the end of the last line read
        for number, raw in enumerate(lines, 1):
            try:
                entry = json.loads(raw)
                version = entry.get("v") if isinstance(entry, dict) else "?"
                if version not in READABLE_VERSIONS:
                    raise ValueError(f"version {version}")
                account.apply(entry["account"], full=version == 2 or entry["full"])
                orders = entry["orders"]
                executions = entry["executions"]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                if number == len(lines) and number > 1:
                    log.warning("dropping a torn last line in %s (a crash mid-write)", self.path)
                    self._cut(good)
                    lines.pop()
                    break
                raise ValueError(f"simulator state {self.path} line {number}: {exc}") from exc
            good += len(raw) + 1
            if state is None:
                state = StoredState(account={})
            for order in orders:
                state.orders[order["id"]] = order
            for execution in executions:
                state.executions[execution["id"]] = execution
        if state is not None:
            state.account = account.state()
            if not data.endswith(b"\n") and good > len(data):  # whole, only the newline lost
                with self.path.open("ab") as f:
                    f.write(b"\n")
        self._lines = len(lines)
        return state

    def append(
        self,
        account: dict[str, Any],
        orders: list[dict[str, Any]],
        executions: list[dict[str, Any]],
    ) -> None:
        """One commit: ``account`` is a delta (``SimAccount.delta_json``). The file stays
        open between commits (opening and closing it was a third of a commit's cost); each
        line is flushed to the OS before this returns, as closing the file did. A write that
        fails part-way (a full disk) is cut off again, so the next line cannot be glued onto
        a torn one."""
        line = _line(account, orders, executions, full=False)
        handle = self._handle
        if handle is None:
            self._make_dir()
            handle = self._handle = self.path.open("ab")
            self._size = os.fstat(handle.fileno()).st_size
        try:
            handle.write(line)
            handle.flush()
        except BaseException:
            self.release()
            with contextlib.suppress(OSError):
                os.truncate(self.path, self._size)
            raise
        self._size += len(line)
        self._lines += 1

    def release(self) -> None:
        """Close the file (a clean stop); the next commit opens it again."""
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):  # what it held unwritten is cut off by append
                handle.close()

    def _make_dir(self) -> None:
        if not self._made_dir:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._made_dir = True

    def _cut(self, size: int) -> None:
        self.release()
        with self.path.open("r+b") as f:
            f.truncate(size)

    @property
    def needs_compaction(self) -> bool:
        """A full line is due: the file is new (or empty), or has grown long."""
        return self._lines == 0 or self._lines >= self._compact_every

    def compact(
        self,
        account: dict[str, Any],
        orders: list[dict[str, Any]],
        executions: list[dict[str, Any]],
    ) -> None:
        """Rewrite the whole state as one line, atomically: ``account`` is the whole account
        (``SimAccount.to_json``)."""
        self._make_dir()
        self.release()  # the open file is replaced
        temp = self.path.with_name(f".{self.path.name}.tmp")
        temp.write_bytes(_line(account, orders, executions, full=True))
        os.replace(temp, self.path)
        self._lines = 1


def _line(
    account: dict[str, Any],
    orders: list[dict[str, Any]],
    executions: list[dict[str, Any]],
    *,
    full: bool,
) -> bytes:
    entry = {
        "v": STATE_VERSION,
        "full": full,
        "account": account,
        "orders": orders,
        "executions": executions,
    }
    return _LINE_JSON(entry).encode() + b"\n"


_LINE_JSON = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps`` with these arguments, built once (``dumps`` builds an encoder per call)."""


class _Account:
    """The account as the lines so far make it: a full line replaces it, a delta is laid
    over it (positions, quotes and opening days by symbol; the rest replaced)."""

    def __init__(self) -> None:
        self.scalars: dict[str, Any] = {}
        self.positions: dict[str, dict[str, Any]] = {}
        self.quotes: dict[str, tuple[str, str]] = {}
        self.opened: dict[str, Any] = {}

    def apply(self, account: dict[str, Any], *, full: bool) -> None:
        """Lay one line's account over the state; nothing changes when it is damaged."""
        if not isinstance(account, dict):
            raise TypeError("account is not an object")
        closed = list(account.get("closed", ()))
        positions = {p["symbol"]: p for p in account["positions"]}
        quotes: dict[str, tuple[str, str]] = {}  # symbol -> (price, time)
        if "quotes_at" in account:
            for at, prices in account["quotes_at"].items():
                quotes.update((symbol, (price, at)) for symbol, price in prices.items())
        else:  # {symbol: {"price", "ts"}}, as older lines hold them
            quotes.update((s, (q["price"], q["ts"])) for s, q in account["quotes"].items())
        opened = dict(account["opened"])
        skip = ("positions", "quotes", "quotes_at", "opened", "closed")
        scalars = {k: v for k, v in account.items() if k not in skip}
        if full:
            self.positions, self.quotes, self.opened = {}, {}, {}
        for symbol in closed:
            self.positions.pop(symbol, None)
        self.positions.update(positions)
        self.quotes.update(quotes)
        self.opened.update(opened)
        self.scalars = scalars

    def state(self) -> dict[str, Any]:
        """In ``SimAccount.to_json``'s shape."""
        return self.scalars | {
            "positions": list(self.positions.values()),
            "quotes": {s: {"price": price, "ts": at} for s, (price, at) in self.quotes.items()},
            "opened": self.opened,
        }
