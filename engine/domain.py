"""Domain value types shared by every part of the engine.

Money and quantities are ``Decimal``; every datetime is timezone-aware UTC. Conversions from
the outside world (floats, strings, naive datetimes) happen once, at the edge, through
``to_decimal`` and ``ensure_utc``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import StrEnum

ZERO = Decimal(0)
EXACT = Context(prec=80)
"""For running totals of market values: wide enough that adding and removing them never
rounds (28-digit values whose magnitudes differ by up to 50 orders)."""
CENT = Decimal("0.01")


class Exposure:
    """A book's positions valued as running totals, exact in ``EXACT``: ``net`` (signed
    market values) and ``gross`` (their absolute values), read from the sums of the long
    and of the short values. Moved by each change instead of summed over every position on
    each read; our portfolio and the simulated account keep one each."""

    __slots__ = ("long", "short")

    def __init__(self) -> None:
        self.long = ZERO
        """The long positions' values (>= 0)."""
        self.short = ZERO
        """The short positions' values (<= 0)."""

    @property
    def net(self) -> Decimal:
        return EXACT.add(self.long, self.short)

    @property
    def gross(self) -> Decimal:
        return EXACT.subtract(self.long, self.short)

    def revalued(self, before: Decimal, after: Decimal) -> None:
        """One position's signed value moved from ``before`` to ``after`` (across zero when
        a fill flips it)."""
        if before == after:
            return
        if before > ZERO:
            self.long = EXACT.subtract(self.long, before)
        elif before < ZERO:
            self.short = EXACT.subtract(self.short, before)
        if after > ZERO:
            self.long = EXACT.add(self.long, after)
        elif after < ZERO:
            self.short = EXACT.add(self.short, after)

    def marked(self, qty: Decimal, old: Decimal, new: Decimal) -> None:
        """A position of ``qty`` marked from price ``old`` to ``new`` (prices are > 0, so
        its side stays): its value moves by ``qty`` x the change, one exact multiply-add on
        its side's sum (once per bar of a held symbol)."""
        if qty == ZERO or old == new:
            return
        if qty > ZERO:
            self.long = EXACT.fma(qty, EXACT.subtract(new, old), self.long)
        else:
            self.short = EXACT.fma(qty, EXACT.subtract(new, old), self.short)

    def reset(self, values: Iterable[Decimal]) -> None:
        """The totals from scratch, from every position's signed value."""
        self.long = self.short = ZERO
        for value in values:
            self.revalued(ZERO, value)


def to_decimal(value: object, *, field: str = "value") -> Decimal:
    """Convert a broker/CSV/settings value to a finite Decimal.

    Floats go through ``str`` so ``0.1`` becomes ``Decimal("0.1")``, not its binary expansion.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{field}: expected a number, got a boolean")
    elif isinstance(value, int | float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{field}: {value!r} is not a number") from None
    else:
        raise ValueError(f"{field}: expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{field}: {value!r} is not a finite number")
    return result


def ensure_utc(value: datetime, *, field: str = "timestamp") -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes rather than guess their zone."""
    if value.tzinfo is UTC:  # nearly every call: what astimezone would return, unchanged
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: naive datetime {value.isoformat()} (a time zone is required)")
    return value.astimezone(UTC)


class TimeText:
    """Aware datetimes as text, ``render`` applied to their UTC form, the last
    ``TIME_TEXTS`` remembered: the journal and the simulator write the same few times (a
    replayed minute's, a burst's) again and again, and a format costs about 1.1 us where a
    look-up costs 0.03 us. Equal instants are one key, so the text depends only on the
    instant."""

    def __init__(self, render: Callable[[datetime], str]) -> None:
        self._render = render
        self._known: dict[datetime, str] = {}

    def __call__(self, value: datetime, *, field: str = "timestamp") -> str:
        text = self._known.get(value)  # a naive value never equals an aware key
        if text is None:
            text = self._render(ensure_utc(value, field=field))
            if len(self._known) >= TIME_TEXTS:
                self._known.clear()
            self._known[value] = text
        return text

    def once(self, value: datetime, *, field: str = "timestamp") -> str:
        """The same text, not remembered: for times that do not repeat (a wall clock's
        readings), which would only push out the ones that do."""
        return self._render(ensure_utc(value, field=field))


TIME_TEXTS = 4096


def parse_utc(text: str, *, field: str = "timestamp") -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` accepted) into aware UTC."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {text!r} is not an ISO-8601 timestamp") from None
    return ensure_utc(parsed, field=field)


def money(value: Decimal) -> Decimal:
    """Round to the cent, half away from zero: the one rounding rule for money shown to the
    trader and for cash a broker settles (why this rule: docs/money.md)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def usd(value: Decimal, *, signed: bool = False) -> str:
    """Money as the trader reads it: ``-$1,234.57``; ``signed`` puts ``+`` on a gain.
    Every text that shows money (gate, reconcile, renderers, reports) goes through here."""
    cents = money(value)
    sign = "-" if cents < ZERO else ("+" if signed and cents > ZERO else "")
    return f"{sign}${abs(cents):,.2f}"


def settlement(qty: Decimal, price: Decimal) -> Decimal:
    """The cash one execution of ``qty`` at ``price`` moves, before commission: its notional
    rounded to the cent (``money``), as the broker settles it (and the simulator does)."""
    return money(qty * price)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"


class OrderStatus(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_PENDING = "cancel_pending"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        return self not in _TERMINAL


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``ts`` is the bar's start (minute bars start on the minute)."""

    symbol: str
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade print."""

    symbol: str
    ts: datetime
    price: Decimal
    size: Decimal


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the engine asks a broker to do. ``qty`` is always positive; ``side`` gives direction."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    strategy: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``execution_id`` is unique per execution at the broker."""

    execution_id: str
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    ts: datetime
    commission: Decimal = ZERO

    @property
    def signed_qty(self) -> Decimal:
        return self.qty * self.side.sign

    @property
    def notional(self) -> Decimal:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class Position:
    """A position as the broker reports it; ``qty`` is signed (negative = short)."""

    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    current_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Account:
    equity: Decimal
    cash: Decimal
    buying_power: Decimal
    last_equity: Decimal
    """Equity at the previous close: the day's starting equity unless we recorded one."""
    daytrade_count: int = 0
    pattern_day_trader: bool = False
    id: str = ""
    """The broker's account number; empty for the simulator."""


@dataclass(frozen=True, slots=True)
class MarketClock:
    ts: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True, slots=True)
class TradingSession:
    """One trading day: open and close as aware UTC datetimes."""

    day: date
    open: datetime
    close: datetime
    early_close: bool = False
