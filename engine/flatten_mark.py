"""What a flatten leaves in the journal while it runs, so a restart knows it was interrupted.

Before a flatten moves the state to REDUCING it records who asked, when, and the state record
its REDUCING replaces; it clears the mark when it is done. A mark found at start-up is a
flatten a kill interrupted: the engine finishes it and then restores the state from before
(``EngineControl.finish_interrupted_flatten``). A flatten's own REDUCING restored without a
mark (a journal written before marks existed, or a mark that could not be written) is
treated the same way: a flatten only ever sets REDUCING over ACTIVE.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from engine.domain import TradingState, ensure_utc
from engine.errors import JournalWriteError
from engine.risk import Cause, StateRecord

log = logging.getLogger(__name__)

MARK_KEY = "flatten_in_progress"


class MarkStore(Protocol):
    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


@dataclass(frozen=True, slots=True)
class FlattenMark:
    actor: str
    started_at: datetime
    replaced: StateRecord | None
    """The state record this flatten's REDUCING replaced; None when it set no REDUCING (the
    state was already REDUCING or HALTED), so there is nothing to restore."""

    def to_json(self) -> str:
        replaced = None
        if self.replaced is not None:
            r = self.replaced
            replaced = {
                "state": r.state.value,
                "actor": r.actor,
                "reason": r.reason,
                "cause": r.cause,
                "ts": r.ts.isoformat(),
            }
        return json.dumps(
            {"actor": self.actor, "started_at": self.started_at.isoformat(), "replaced": replaced}
        )

    @classmethod
    def from_json(cls, text: str) -> FlattenMark:
        """Raises ``ValueError`` (or ``KeyError``/``TypeError``) on a malformed mark."""
        data = json.loads(text)
        replaced = None
        if data["replaced"] is not None:
            r = data["replaced"]
            replaced = StateRecord(
                TradingState(r["state"]),
                str(r["actor"]),
                str(r["reason"]),
                Cause(r["cause"]),
                datetime.fromisoformat(r["ts"]),
            )
        started = ensure_utc(datetime.fromisoformat(data["started_at"]), field="started_at")
        return cls(str(data["actor"]), started, replaced)


async def save(store: MarkStore, mark: FlattenMark | None) -> bool:
    """Write (or clear, with None) the mark; False when the journal cannot write it: a
    flatten never waits for, or fails because of, local storage."""
    try:
        await store.set_meta(MARK_KEY, "" if mark is None else mark.to_json())
    except JournalWriteError as exc:
        log.warning("flatten mark not written (%s): the flatten goes on", exc)
        return False
    return True


async def load(store: MarkStore, restored: StateRecord) -> FlattenMark | None:
    """The interrupted flatten, if any, given the state record restored at start-up."""
    text = await store.get_meta(MARK_KEY)
    if text:
        try:
            return FlattenMark.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable flatten mark %r ignored: %s", text, exc)
    if restored.state is TradingState.REDUCING and restored.cause == Cause.FLATTEN:
        before = StateRecord(
            TradingState.ACTIVE, restored.actor, "before the flatten", Cause.MANUAL, restored.ts
        )
        return FlattenMark(restored.actor, restored.ts, before)
    return None
