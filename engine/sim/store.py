"""Crash-safe persistence for the simulator: an append-only file of JSON lines.

Each commit appends ONE line holding the (small) account snapshot plus the orders that
changed and the executions that are new, so the cost of a commit does not grow with the
order history. Reading replays the lines: the last account snapshot wins, the last version
of each order wins, executions accumulate. A process killed mid-append leaves a torn last
line, which is dropped: the state is then exactly that of the previous commit. Every
``compact_every`` commits the file is rewritten as a single line (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_VERSION = 2


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

    def load(self) -> StoredState | None:
        """The committed state, or None when there is no file. Raises ValueError when the
        file is damaged anywhere but in its last line."""
        if not self.path.exists():
            return None
        lines = self.path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        state: StoredState | None = None
        for number, raw in enumerate(lines, 1):
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict) or entry.get("v") != STATE_VERSION:
                    raise ValueError(
                        f"version {entry.get('v') if isinstance(entry, dict) else '?'}"
                    )
                account = entry["account"]
                orders = entry["orders"]
                executions = entry["executions"]
            except (ValueError, KeyError, TypeError) as exc:
                if number == len(lines) and number > 1:
                    log.warning("dropping a torn last line in %s (a crash mid-write)", self.path)
                    break
                raise ValueError(f"simulator state {self.path} line {number}: {exc}") from exc
            if state is None:
                state = StoredState(account=account)
            state.account = account
            for order in orders:
                state.orders[order["id"]] = order
            for execution in executions:
                state.executions[execution["id"]] = execution
        self._lines = len(lines)
        return state

    def append(
        self,
        account: dict[str, Any],
        orders: list[dict[str, Any]],
        executions: list[dict[str, Any]],
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            f.write(_line(account, orders, executions))
        self._lines += 1

    @property
    def needs_compaction(self) -> bool:
        return self._lines >= self._compact_every

    def compact(
        self,
        account: dict[str, Any],
        orders: list[dict[str, Any]],
        executions: list[dict[str, Any]],
    ) -> None:
        """Rewrite the whole state as one line, atomically."""
        temp = self.path.with_name(f".{self.path.name}.tmp")
        temp.write_bytes(_line(account, orders, executions))
        os.replace(temp, self.path)
        self._lines = 1


def _line(
    account: dict[str, Any], orders: list[dict[str, Any]], executions: list[dict[str, Any]]
) -> bytes:
    entry = {"v": STATE_VERSION, "account": account, "orders": orders, "executions": executions}
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"
