"""Which trading mode and broker account a journal belongs to.

A data dir holds one account's history: fills, orders, the trading state, the day's counters.
A run in another mode, or with the keys of another account, would inherit that state and
write into it (a paper run restoring the simulator's positions and journaling its own fills
beside them), so start-up refuses with what to do instead. The first start records the owner
in the journal's meta; a journal written before this check adopts the first run that opens it.
The simulator has no account id: in sim mode only the mode is checked.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import DomainError
from engine.store.journal import Journal

MODE_KEY = "owner_mode"
ACCOUNT_KEY = "owner_account"


class JournalOwnerError(DomainError):
    """The journal belongs to another mode or account: a setting to change (the data dir),
    not something a restart fixes."""


async def claim_mode(journal: Journal, mode: str, data_dir: Path) -> None:
    """Record ``mode`` as the journal's, or refuse when it holds another mode's history.
    Reads before it writes: a refused start leaves the journal as it was."""
    owner = await journal.get_meta(MODE_KEY)
    if owner is None:
        await journal.set_meta(MODE_KEY, mode)
    elif owner != mode:
        raise JournalOwnerError(
            f"the journal in {data_dir} holds {owner} trading, and this run is {mode}: give "
            f"{mode} its own data dir (STORAGE_DATA_DIR={data_dir / mode} or --data-dir), or "
            f"start in {owner} mode again"
        )


async def claim_account(journal: Journal, mode: str, account_id: str, data_dir: Path) -> None:
    """Record the broker account, or refuse when the journal holds another account's
    history. An empty id (the simulator) records and checks nothing."""
    if not account_id:
        return
    owner = await journal.get_meta(ACCOUNT_KEY)
    if owner is None:
        await journal.set_meta(ACCOUNT_KEY, account_id)
    elif owner != account_id:
        raise JournalOwnerError(
            f"the journal in {data_dir} holds Alpaca account {_short(owner)}, and these keys "
            f"open account {_short(account_id)}: give each account its own data dir "
            f"(STORAGE_DATA_DIR={data_dir / mode}-{account_id[-4:].lower()} or --data-dir), "
            "or use that account's keys"
        )


def _short(account_id: str) -> str:
    """Enough of an account number to tell two apart, not the whole of it."""
    return f"…{account_id[-4:]}" if len(account_id) > 4 else account_id
