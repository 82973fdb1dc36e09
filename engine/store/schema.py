"""The journal's tables, connection settings and migrations.

Migrations are an ordered list of SQL scripts; version N is ``MIGRATIONS[N - 1]``. Each runs in
its own transaction together with its ``schema_version`` row, so a failed migration leaves the
file at the previous version. Never edit a released migration: append a new one.

Every table is STRICT with TEXT columns for Decimals and timestamps, so SQLite cannot turn
``"0.000001"`` into a float behind our back.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime

import aiosqlite

from engine.domain import OrderStatus
from engine.store.records import ts_to_text

# WAL lets readers (a second process, a backup) run while we write. synchronous=NORMAL in WAL
# mode syncs at checkpoints, not at every commit: a committed transaction survives the process
# being killed (the WAL is in the OS page cache), and only a power loss or kernel crash can
# drop the last few commits. That is the trade we make for sub-millisecond commits on fills.
PRAGMAS: tuple[str, ...] = (
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)

_V1_JOURNAL = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    event_time TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;
CREATE INDEX events_by_kind ON events (kind, id);

CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty TEXT NOT NULL,
    order_type TEXT NOT NULL,
    limit_price TEXT,
    time_in_force TEXT NOT NULL,
    strategy TEXT NOT NULL,
    status TEXT NOT NULL,
    broker_order_id TEXT NOT NULL,
    filled_qty TEXT NOT NULL,
    avg_fill_price TEXT,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    recorded_at TEXT NOT NULL
) STRICT;
CREATE INDEX orders_by_created ON orders (created_at);
CREATE INDEX orders_by_status ON orders (status);

CREATE TABLE fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL,
    broker_order_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty TEXT NOT NULL,
    price TEXT NOT NULL,
    commission TEXT NOT NULL,
    ts TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;
CREATE INDEX fills_by_ts ON fills (ts, id);
CREATE INDEX fills_by_order ON fills (client_order_id);

CREATE TABLE trading_state (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'REDUCING', 'HALTED')),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    cause TEXT NOT NULL,
    ts TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    command TEXT NOT NULL,
    args TEXT NOT NULL,
    ok INTEGER NOT NULL CHECK (ok IN (0, 1)),
    result TEXT NOT NULL,
    ts TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;
"""

_V2_LIMITS_AND_EQUITY = """
CREATE TABLE daily_counters (
    day TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (day, key)
) STRICT;

CREATE TABLE equity_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    equity TEXT NOT NULL,
    cash TEXT NOT NULL,
    day_pnl TEXT,
    gross_exposure TEXT NOT NULL,
    net_exposure TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;
CREATE INDEX equity_snapshots_by_ts ON equity_snapshots (ts, id);
"""

# Updates and journal rows that could not be applied: kept as received, with the reason.
_V3_QUARANTINE = """
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    ts TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;
"""

MIGRATIONS: tuple[str, ...] = (_V1_JOURNAL, _V2_LIMITS_AND_EQUITY, _V3_QUARANTINE)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
) STRICT
"""


class SchemaError(RuntimeError):
    """The journal file cannot be used by this version of the code."""


async def configure(db: aiosqlite.Connection) -> str:
    """Apply the connection pragmas; returns the journal mode SQLite actually chose."""
    async with db.execute("PRAGMA journal_mode=WAL") as cursor:
        row = await cursor.fetchone()
    for pragma in PRAGMAS:
        async with db.execute(pragma):
            pass
    return str(row[0]).lower() if row else ""


async def current_version(db: aiosqlite.Connection) -> int:
    async with db.execute(_VERSION_TABLE):
        pass
    async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(
    db: aiosqlite.Connection,
    applied_at: datetime,
    migrations: tuple[str, ...] = MIGRATIONS,
) -> int:
    """Bring the file up to ``len(migrations)``; returns the version it was at before.

    Raises ``SchemaError`` for a file written by newer code, whose tables we do not know.
    The connection must be in autocommit mode (``isolation_level=None``).
    """
    start = await current_version(db)
    latest = len(migrations)
    if start > latest:
        raise SchemaError(
            f"journal schema is version {start} but this code knows only up to {latest}: "
            "it was written by a newer version; upgrade the code or use another file"
        )
    stamp = ts_to_text(applied_at)
    for version in range(start + 1, latest + 1):
        script = (
            "BEGIN IMMEDIATE;\n"
            f"{migrations[version - 1]}\n"
            f"INSERT INTO schema_version (version, applied_at) VALUES ({version}, '{stamp}');\n"
            "COMMIT;"
        )
        try:
            async with db.executescript(script):
                pass
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                async with db.execute("ROLLBACK"):
                    pass
            raise SchemaError(f"journal migration to version {version} failed: {exc}") from exc
    return start


# ----- statements (column order matches the row builders in engine.store.records) ----------

INSERT_EVENT = "INSERT INTO events (kind, payload, event_time, recorded_at) VALUES (?, ?, ?, ?)"

ORDER_COLUMNS = (
    "client_order_id, symbol, side, qty, order_type, limit_price, time_in_force, strategy, "
    "status, broker_order_id, filled_qty, avg_fill_price, reason, created_at, updated_at, "
    "recorded_at"
)
UPSERT_ORDER = f"""
INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client_order_id) DO UPDATE SET
    symbol = excluded.symbol, side = excluded.side, qty = excluded.qty,
    order_type = excluded.order_type, limit_price = excluded.limit_price,
    time_in_force = excluded.time_in_force, strategy = excluded.strategy,
    status = excluded.status, broker_order_id = excluded.broker_order_id,
    filled_qty = excluded.filled_qty, avg_fill_price = excluded.avg_fill_price,
    reason = excluded.reason, updated_at = excluded.updated_at,
    recorded_at = excluded.recorded_at
"""

INSERT_SNAPSHOT = """
INSERT INTO equity_snapshots (ts, equity, cash, day_pnl, gross_exposure, net_exposure, recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

FILL_COLUMNS = (
    "execution_id, client_order_id, broker_order_id, symbol, side, qty, price, commission, ts, "
    "recorded_at"
)
INSERT_FILL = f"""
INSERT INTO fills ({FILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (execution_id) DO NOTHING
"""

INSERT_STATE = """
INSERT INTO trading_state (state, actor, reason, cause, ts, recorded_at) VALUES (?, ?, ?, ?, ?, ?)
"""

INSERT_AUDIT = """
INSERT INTO audit (actor, command, args, ok, result, ts, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)
"""

UPSERT_COUNTER = """
INSERT INTO daily_counters (day, key, value, recorded_at) VALUES (?, ?, ?, ?)
ON CONFLICT (day, key) DO UPDATE SET value = excluded.value, recorded_at = excluded.recorded_at
"""

INSERT_QUARANTINE = """
INSERT INTO quarantine (source, payload, reason, ts, recorded_at) VALUES (?, ?, ?, ?, ?)
"""

UPSERT_META = """
INSERT INTO meta (key, value, recorded_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, recorded_at = excluded.recorded_at
"""

SELECT_COUNTER = "SELECT value FROM daily_counters WHERE day = ? AND key = ?"
SELECT_META = "SELECT value FROM meta WHERE key = ?"
SELECT_FILLS_SINCE = f"SELECT {FILL_COLUMNS} FROM fills WHERE ts >= ? ORDER BY ts, id"
SELECT_ORDERS = f"SELECT {ORDER_COLUMNS} FROM orders{{where}} ORDER BY created_at, rowid"
SELECT_ORDER_FILLS = (
    "SELECT client_order_id, execution_id, qty, price FROM fills WHERE client_order_id IN "
    "(SELECT client_order_id FROM orders{where}) ORDER BY ts, id"
)
SELECT_HAS_CID = """
SELECT 1 FROM orders WHERE client_order_id = ?
UNION ALL SELECT 1 FROM fills WHERE client_order_id = ? LIMIT 1
"""
SELECT_CIDS_SINCE = """
SELECT client_order_id FROM orders WHERE created_at >= ?
UNION SELECT client_order_id FROM fills WHERE ts >= ?
"""
SELECT_STATES = """
SELECT state, actor, reason, cause, ts, recorded_at FROM trading_state ORDER BY id DESC LIMIT ?
"""
SELECT_AUDIT = """
SELECT actor, command, args, ok, result, ts, recorded_at FROM audit ORDER BY id DESC LIMIT ?
"""
SELECT_QUARANTINE = """
SELECT source, payload, reason, ts, recorded_at FROM quarantine ORDER BY id DESC LIMIT ?
"""
SELECT_SNAPSHOTS = """
SELECT ts, equity, cash, day_pnl, gross_exposure, net_exposure FROM equity_snapshots
WHERE ts >= ? ORDER BY ts, id
"""
SELECT_EVENTS = """
SELECT kind, payload, event_time, recorded_at FROM events ORDER BY id DESC LIMIT ?
"""
SELECT_EVENTS_OF_KIND = """
SELECT kind, payload, event_time, recorded_at FROM events WHERE kind = ? ORDER BY id DESC LIMIT ?
"""

_OPEN_STATUSES = tuple(status.value for status in OrderStatus if status.is_open)


def orders_where(*, open_only: bool, since: datetime | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause (and its parameters) for ``SELECT_ORDERS`` / ``SELECT_ORDER_FILLS``."""
    clauses: list[str] = []
    params: list[str] = []
    if open_only:
        clauses.append(f"status IN ({', '.join('?' * len(_OPEN_STATUSES))})")
        params.extend(_OPEN_STATUSES)
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(ts_to_text(since))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
