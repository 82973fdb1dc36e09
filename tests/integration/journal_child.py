"""Child process for test_journal_sigkill: records fills until it is killed.

Usage: python tests/integration/journal_child.py <db path> [halt_after] [group]

Prints ``ACK fill <execution_id>`` / ``ACK state HALTED`` only after the awaited durable call
has returned, so every ACK the parent reads is a promise that the row is committed. With
``group`` > 1, fills are recorded ``group`` at a time concurrently (so they share group
commits), each group also repeating the previous group's last fill (a duplicate the journal
must not store twice).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

# Import this checkout's engine, not whichever one the venv was installed from.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.clock import SystemClock
from engine.domain import Fill, Side, TradingState
from engine.store.journal import Journal

HALT_REASON = "sigkill test: loss limit"
MAX_FILLS = 1_000_000  # stop on our own if the parent never kills us


def ack(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_fill(i: int) -> Fill:
    return Fill(
        execution_id=f"exec-{i:07d}",
        client_order_id=f"cid-{i // 4}",
        broker_order_id=f"b-{i // 4}",
        symbol="AAPL",
        side=Side.BUY if i % 2 else Side.SELL,
        qty=Decimal("0.5"),
        price=Decimal("100.01") + Decimal(i) / 1000,
        ts=datetime.now(UTC),
    )


async def main(path: Path, halt_after: int, group: int) -> None:
    journal = await Journal.open(path, SystemClock(), flush_interval=0.01, batch_size=50)

    async def record(fill: Fill) -> None:
        await journal.record_fill(fill)
        ack(f"ACK fill {fill.execution_id}")

    try:
        await journal.record_trading_state(
            TradingState.ACTIVE, "system", "startup", "boot", datetime.now(UTC)
        )
        halted = False
        for start in range(0, MAX_FILLS, group):
            # Write-behind traffic alongside, so the kill can land in the middle of a batch.
            journal.append_event(
                "tick", {"i": start, "price": Decimal("100.01")}, datetime.now(UTC)
            )
            fills = [make_fill(i) for i in range(start, start + group)]
            if start:
                fills.append(make_fill(start - 1))
            await asyncio.gather(*(record(fill) for fill in fills))
            if not halted and start + group >= halt_after:
                await journal.record_trading_state(
                    TradingState.HALTED, "risk", HALT_REASON, "daily_loss", datetime.now(UTC)
                )
                halted = True
                ack("ACK state HALTED")
    finally:
        await journal.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    halt_after = int(args[1]) if len(args) > 1 else 100
    group = int(args[2]) if len(args) > 2 else 1
    asyncio.run(main(Path(args[0]), halt_after, group))
