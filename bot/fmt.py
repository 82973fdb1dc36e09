"""Small, phone-friendly formatting of numbers and times; shared by every renderer."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from engine.clock import NEW_YORK, et_minute
from engine.domain import usd


def money(value: Decimal | None) -> str:
    """``-$1,234.57`` by the one money rule (``engine.domain.usd``); ``n/a`` for None."""
    return "n/a" if value is None else usd(value)


def signed_money(value: Decimal | None) -> str:
    """``+$12.30`` / ``-$12.30`` / ``$0.00``; ``n/a`` for None."""
    return "n/a" if value is None else usd(value, signed=True)


def price(value: Decimal | None) -> str:
    """A share price: ``$231.97``, ``$0.4512`` below a dollar; ``n/a`` for None."""
    if value is None:
        return "n/a"
    places = Decimal("0.0001") if abs(value) < 1 else Decimal("0.01")
    return f"${value.quantize(places, rounding=ROUND_HALF_UP):,}"


def qty(value: Decimal) -> str:
    """``10`` not ``10.000``; ``0.5``; never scientific notation."""
    text = f"{value.normalize():f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def signed_qty(value: Decimal) -> str:
    return ("+" if value > 0 else "") + qty(value)


def pct(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if rounded == 0:
        return "0.00%"  # never "-0.00%"
    return ("+" if rounded > 0 else "") + f"{rounded}%"


def duration(seconds: float | None) -> str:
    """``45s``, ``3m 05s``, ``2h 05m``, ``3d 4h``."""
    if seconds is None:
        return "n/a"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def et_time(ts: datetime | None) -> str:
    """Exchange time for display: ``14:05 ET`` (with the date when not today is unclear)."""
    if ts is None:
        return "never"
    return ts.astimezone(NEW_YORK).strftime("%H:%M:%S ET")


def et_datetime(ts: datetime | None) -> str:
    if ts is None:
        return "n/a"
    return et_minute(ts)


def millis(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"
