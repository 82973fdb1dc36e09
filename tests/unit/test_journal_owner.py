"""A journal belongs to one mode and one broker account; another one is refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.clock import SystemClock
from engine.journal_owner import (
    ACCOUNT_KEY,
    MODE_KEY,
    JournalOwnerError,
    claim_account,
    claim_mode,
)
from engine.store.journal import Journal


async def open_journal(tmp_path: Path) -> Journal:
    return await Journal.open(tmp_path / "trader.sqlite", SystemClock())


async def test_claim_mode_when_journal_is_new_then_records_the_mode(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path)
    try:
        await claim_mode(journal, "sim", tmp_path)
        await claim_mode(journal, "sim", tmp_path)  # the same mode again: fine

        assert await journal.get_meta(MODE_KEY) == "sim"
    finally:
        await journal.close()


async def test_claim_mode_when_journal_holds_another_mode_then_refused_and_unchanged(
    tmp_path: Path,
) -> None:
    journal = await open_journal(tmp_path)
    try:
        await claim_mode(journal, "sim", tmp_path)

        with pytest.raises(JournalOwnerError) as refused:
            await claim_mode(journal, "paper", tmp_path)

        assert await journal.get_meta(MODE_KEY) == "sim"
    finally:
        await journal.close()
    message = str(refused.value)
    assert message.startswith(f"the journal in {tmp_path} holds sim trading, and this run is paper")
    assert f"STORAGE_DATA_DIR={tmp_path / 'paper'}" in message
    assert "start in sim mode again" in message


async def test_claim_account_when_another_account_then_refused_naming_only_the_ends(
    tmp_path: Path,
) -> None:
    journal = await open_journal(tmp_path)
    try:
        await claim_account(journal, "paper", "PA1111AAAA", tmp_path)
        await claim_account(journal, "paper", "PA1111AAAA", tmp_path)

        with pytest.raises(JournalOwnerError) as refused:
            await claim_account(journal, "paper", "PA2222BBBB", tmp_path)

        assert await journal.get_meta(ACCOUNT_KEY) == "PA1111AAAA"
    finally:
        await journal.close()
    message = str(refused.value)
    assert "holds Alpaca account …AAAA, and these keys open account …BBBB" in message
    assert "PA1111" not in message
    assert "STORAGE_DATA_DIR=" in message


async def test_claim_account_when_no_account_id_then_nothing_recorded(tmp_path: Path) -> None:
    journal = await open_journal(tmp_path)
    try:
        await claim_account(journal, "sim", "", tmp_path)

        assert await journal.get_meta(ACCOUNT_KEY) is None
    finally:
        await journal.close()
