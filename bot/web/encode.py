"""Plain data to JSON: Decimal amounts as strings (no float rounding), times as ISO 8601 in
UTC, enums as their values, dataclasses as objects."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


def iso_utc(ts: datetime) -> str:
    """``2026-11-20T15:04:05.123456Z``. A naive time is taken as UTC (times inside are
    aware UTC; this only keeps a stray one from failing a whole reply)."""
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plain(value: object) -> JSONValue:
    """``value`` as JSON-ready data; raises ``TypeError`` for what has no JSON form."""
    if isinstance(value, Enum):
        return plain(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")


def dumps(value: object) -> str:
    return json.dumps(plain(value), ensure_ascii=False, separators=(",", ":"))
