"""What a chaos run compares: the engine's journal (a real SQLite file, read beside the
engine) against the fake's REST view (orders, FILL activities, account cash, positions).

- duplicates: a signal sent twice (two broker orders for one strategy, symbol and bar,
  whatever their client order ids) plus fills journaled beyond what the broker filled;
- lost fills: broker executions the journal does not have once the engine is up again;
- phantom fills: journal fills the broker never made;
- cash difference: the cash the journal's fills imply (starting cash, each execution's
  notional to the cent, half-up, and its commission) minus the broker's account cash.

Fills are matched by execution id: the stream's and the activities' ids both become
``<order id>:<cumulative qty>`` (``engine.broker.alpaca.convert.execution_key``)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from engine.broker.alpaca.convert import execution_key
from tests.chaos.procs import Fake

CENT = Decimal("0.01")
STARTING_CASH = Decimal(100_000)
DB_NAME = "trader.sqlite"


@dataclass(frozen=True)
class Fill:
    key: str
    order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    commission: Decimal = Decimal(0)


@dataclass
class BrokerView:
    fills: dict[str, Fill]
    orders: list[dict[str, object]]
    cash: Decimal
    positions: dict[str, Decimal]

    @property
    def open_orders(self) -> int:
        return sum(1 for o in self.orders if o.get("status") in OPEN_STATUSES)


OPEN_STATUSES = frozenset(
    {"new", "accepted", "pending_new", "partially_filled", "accepted_for_bidding", "held"}
)


async def broker_view(fake: Fake) -> BrokerView:
    fills: dict[str, Fill] = {}
    token = ""
    while True:
        query = {"direction": "asc", "page_size": "100"}
        if token:
            query["page_token"] = token
        page = await fake.get("/v2/account/activities/FILL", **query)
        for a in page:
            key = execution_key(a["order_id"], Decimal(a["cum_qty"]))
            fills[key] = Fill(
                key, a["order_id"], a["symbol"], a["side"], Decimal(a["qty"]), Decimal(a["price"])
            )
        if len(page) < 100:
            break
        token = page[-1]["id"]
    orders: list[dict[str, object]] = []
    after = ""
    while True:
        query = {"status": "all", "limit": "500", "direction": "asc"}
        if after:
            query["after"] = after
        page = await fake.get("/v2/orders", **query)
        orders.extend(page)
        if len(page) < 500:
            break
        after = page[-1]["submitted_at"]
    account = await fake.get("/v2/account")
    positions = {p["symbol"]: Decimal(p["qty"]) for p in await fake.get("/v2/positions")}
    return BrokerView(fills, orders, Decimal(account["cash"]), positions)


@dataclass
class JournalView:
    fills: dict[str, Fill]
    fill_rows: int
    quarantined: int
    state: str

    def positions(self) -> dict[str, Decimal]:
        held: Counter[str] = Counter()
        for f in self.fills.values():
            held[f.symbol] += f.qty if f.side == "buy" else -f.qty  # type: ignore[assignment]
        return {s: Decimal(q) for s, q in held.items() if q}

    def cash(self, start: Decimal = STARTING_CASH) -> Decimal:
        cash = start
        for f in self.fills.values():
            notional = (f.qty * f.price).quantize(CENT, rounding=ROUND_HALF_UP)
            cash += (-notional if f.side == "buy" else notional) - f.commission
        return cash


def journal_view(data_dir: Path) -> JournalView:
    path = data_dir / DB_NAME
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute(
            "SELECT execution_id, broker_order_id, symbol, side, qty, price, commission "
            "FROM fills ORDER BY id"
        ).fetchall()
        quarantined = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        last = db.execute("SELECT state FROM trading_state ORDER BY id DESC LIMIT 1").fetchone()
    fills = {
        r[0]: Fill(r[0], r[1], r[2], r[3], Decimal(r[4]), Decimal(r[5]), Decimal(r[6]))
        for r in rows
    }
    return JournalView(fills, len(rows), int(quarantined), last[0] if last else "ACTIVE")


@dataclass
class Tally:
    """One comparison of the journal with the broker."""

    duplicates: int = 0
    lost: int = 0
    phantom: int = 0
    cash_diff: Decimal = Decimal(0)
    position_diffs: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.duplicates += other.duplicates
        self.lost += other.lost
        self.phantom += other.phantom
        self.position_diffs += other.position_diffs
        if abs(other.cash_diff) > abs(self.cash_diff):
            self.cash_diff = other.cash_diff
        self.notes.extend(other.notes)

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.lost or self.phantom or self.cash_diff)


def signal_key(client_order_id: str) -> str:
    """``<strategy>-<symbol>-<bar time>`` of a strategy's order id (its hash suffix covers a
    tag: a flatten's closes carry one)."""
    return client_order_id.rsplit("-", 1)[0]


def compare(
    journal: JournalView, broker: BrokerView, *, due: set[str] | None = None, cash: bool = True
) -> Tally:
    """``due``: the broker's executions the journal must hold by now (all of them when
    None); ``cash``: whether the two are quiet enough to compare cash and positions."""
    tally = Tally()
    strategy_orders = Counter(
        signal_key(str(o["client_order_id"]))
        for o in broker.orders
        if o.get("client_order_id") and not str(o["client_order_id"]).startswith("flatten")
    )
    tally.duplicates += sum(n - 1 for n in strategy_orders.values() if n > 1)
    tally.duplicates += journal.fill_rows - len(journal.fills)
    filled = {str(o["id"]): Decimal(str(o["filled_qty"])) for o in broker.orders}
    journaled: Counter[str] = Counter()
    for f in journal.fills.values():
        journaled[f.order_id] += f.qty  # type: ignore[assignment]
    tally.duplicates += sum(1 for oid, q in journaled.items() if oid in filled and q > filled[oid])
    wanted = set(broker.fills) if due is None else due
    lost = wanted - set(journal.fills)
    phantom = set(journal.fills) - set(broker.fills)
    tally.lost, tally.phantom = len(lost), len(phantom)
    tally.notes += [f"lost {k}" for k in sorted(lost)] + [f"phantom {k}" for k in sorted(phantom)]
    if cash:
        tally.cash_diff = journal.cash() - broker.cash
        mine, theirs = journal.positions(), broker.positions
        tally.position_diffs = sum(
            1 for s in set(mine) | set(theirs) if mine.get(s, 0) != theirs.get(s, 0)
        )
    return tally
