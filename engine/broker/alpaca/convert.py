"""Alpaca's JSON -> our domain types. Pure functions, no I/O.

The adapter asks alpaca-py for raw JSON (``raw_data=True``) rather than its pydantic models:
the models hold money as ``float`` and refuse status words they do not know, while Alpaca
sends money and quantities as strings, which become ``Decimal`` here without a float in
between. Every datetime leaves as aware UTC; calendar days are New York local at the edge.

Status words onto our order state machine (``ORDER_STATUS``):

- ``new``, ``accepted``, ``pending_new``, ``accepted_for_bidding``, ``held``, ``stopped``:
  SUBMITTED (working, nothing executed yet as far as the status says).
- ``partially_filled``: PARTIALLY_FILLED; ``filled``: FILLED.
- ``pending_cancel``: CANCEL_PENDING; ``canceled``: CANCELLED; ``expired``: EXPIRED;
  ``rejected``: REJECTED; ``suspended`` (no longer eligible for trading, after executions
  or not): CANCELLED.
- ``done_for_day``, ``pending_replace``, ``calculated``: the order is still alive at Alpaca
  (done for today, resumed or finally expired later), so it stays open: PARTIALLY_FILLED when
  something executed, else SUBMITTED; ``calculated`` with everything executed is FILLED.
- ``replaced``: this order id is finished and a new one carries on; we never replace orders,
  so this only happens on Alpaca's side (corporate actions): CANCELLED here, and the
  replacement is adopted by reconciliation as an order we did not know.
- An unknown word keeps the order open (SUBMITTED/PARTIALLY_FILLED) so it stays tracked.

Execution ids: the trade-update stream and the FILL activities name executions differently
(``execution_id`` versus an activity id ``<time>::<uuid>``), and the journal de-duplicates
fills by id. Both carry the order id and the order's cumulative filled quantity after the
execution (the stream's order snapshot ``filled_qty``, the activity's ``cum_qty``), which is
unique per execution of an order, so ``execution_key`` builds the id from those two.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from engine.broker.port import BrokerOrder, CloseResult, TradeUpdate
from engine.clock import NEW_YORK
from engine.domain import (
    ZERO,
    Account,
    Fill,
    MarketClock,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    TradingSession,
    parse_utc,
    to_decimal,
)

log = logging.getLogger(__name__)

Json = Mapping[str, Any]
S = OrderStatus

ORDER_STATUS: Final[dict[str, OrderStatus]] = {
    "new": S.SUBMITTED,
    "accepted": S.SUBMITTED,
    "pending_new": S.SUBMITTED,
    "accepted_for_bidding": S.SUBMITTED,
    "held": S.SUBMITTED,
    "stopped": S.SUBMITTED,
    "partially_filled": S.PARTIALLY_FILLED,
    "filled": S.FILLED,
    "pending_cancel": S.CANCEL_PENDING,
    "canceled": S.CANCELLED,
    "replaced": S.CANCELLED,
    "expired": S.EXPIRED,
    "rejected": S.REJECTED,
    "suspended": S.CANCELLED,
}
"""Alpaca status words with a fixed meaning; the rest depend on what executed."""

_STILL_WORKING: Final = frozenset({"done_for_day", "pending_replace", "calculated"})
_REGULAR_CLOSE: Final = time(16, 0)


def order_status(word: str, qty: Decimal, filled_qty: Decimal) -> OrderStatus:
    """Map an Alpaca order status onto ours (see the module docstring)."""
    fixed = ORDER_STATUS.get(word)
    if fixed is not None:
        return fixed
    if word == "calculated" and qty > ZERO and filled_qty >= qty:
        return S.FILLED
    if word not in _STILL_WORKING:
        log.warning("unknown Alpaca order status %r; treating the order as open", word)
    return S.PARTIALLY_FILLED if filled_qty > ZERO else S.SUBMITTED


def order(raw: Json) -> BrokerOrder:
    """An Alpaca order object as a ``BrokerOrder``. Quantities and prices must be
    non-negative numbers; a notional order (``qty: null``) reports what has executed."""
    ident = _text(raw, "id")
    filled = _amount(raw, "filled_qty") or ZERO
    notional = _amount(raw, "notional")
    qty = _amount(raw, "qty")
    if qty is None:
        if notional is None:
            raise ValueError(f"order {ident}: neither qty nor notional")
        qty = filled
    elif filled > qty:
        raise ValueError(f"order {ident}: filled_qty {filled} is more than qty {qty}")
    word = _text(raw, "status")
    submitted = _time(raw, "submitted_at") or _time(raw, "created_at")
    if submitted is None:
        raise ValueError(f"order {ident}: no submitted_at/created_at")
    return BrokerOrder(
        broker_order_id=ident,
        client_order_id=_text(raw, "client_order_id"),
        symbol=_text(raw, "symbol").upper(),
        side=side(_text(raw, "side")),
        qty=qty,
        order_type=_order_type(raw),
        time_in_force=_tif(str(raw.get("time_in_force") or "day")),
        limit_price=_amount(raw, "limit_price"),
        status=order_status(word, qty if notional is None else ZERO, filled),
        broker_status=word,
        filled_qty=filled,
        filled_avg_price=_amount(raw, "filled_avg_price"),
        submitted_at=submitted,
        updated_at=_time(raw, "updated_at") or submitted,
        notional=notional,
    )


def execution_key(broker_order_id: str, cum_qty: Decimal) -> str:
    """The execution id shared by the stream and the activities (see the module docstring)."""
    return f"{broker_order_id}:{decimal_text(cum_qty)}"


def trade_update(raw: Json) -> TradeUpdate:
    """The ``data`` of an Alpaca ``trade_updates`` message as a ``TradeUpdate``.

    Raises ``ValueError`` naming the field when the shape is wrong: a missing event or order,
    a field that is not a number or a time, a negative quantity or price, or a fill without
    its price and quantity. Whether the update fits our book is the engine's check."""
    event = _text(raw, "event")
    snapshot = order(_mapping(raw, "order"))
    ts = _time(raw, "timestamp") or _time(raw, "at") or snapshot.updated_at
    price, qty = _amount(raw, "price"), _amount(raw, "qty")
    execution_id: str | None = None
    if event in ("fill", "partial_fill"):
        if price is None or qty is None:
            raise ValueError(f"{event} for order {snapshot.broker_order_id}: no price or qty")
        execution_id = execution_key(snapshot.broker_order_id, snapshot.filled_qty)
    position_qty = _dec(raw, "position_qty")  # signed: a short position is negative
    return TradeUpdate(
        event=event,
        order=snapshot,
        ts=ts,
        execution_id=execution_id,
        price=price,
        qty=qty,
        position_qty=position_qty,
    )


def fill_activity(raw: Json, client_order_id: str) -> Fill:
    """One FILL account activity as a ``Fill``. Activities do not carry the client order
    id, so the caller looks it up by ``order_id``. Alpaca charges no commission on
    equities; regulatory fees arrive as separate activities and are not fills."""
    order_id = str(_req(raw, "order_id"))
    cum = _dec(raw, "cum_qty")
    if cum is None:
        raise ValueError(f"fill activity {raw.get('id')}: no cum_qty")
    ts = _time(raw, "transaction_time")
    if ts is None:
        raise ValueError(f"fill activity {raw.get('id')}: no transaction_time")
    return Fill(
        execution_id=execution_key(order_id, cum),
        client_order_id=client_order_id,
        broker_order_id=order_id,
        symbol=str(_req(raw, "symbol")).upper(),
        side=side(str(_req(raw, "side"))),
        qty=_req_dec(raw, "qty"),
        price=_req_dec(raw, "price"),
        ts=ts,
    )


def position(raw: Json) -> Position:
    qty = abs(_req_dec(raw, "qty"))
    if str(raw.get("side", "long")).lower() == "short":
        qty = -qty
    return Position(
        symbol=str(_req(raw, "symbol")).upper(),
        qty=qty,
        avg_entry_price=_req_dec(raw, "avg_entry_price"),
        current_price=_dec(raw, "current_price"),
    )


def account(raw: Json) -> Account:
    return Account(
        equity=_req_dec(raw, "equity"),
        cash=_req_dec(raw, "cash"),
        buying_power=_req_dec(raw, "buying_power"),
        last_equity=_dec(raw, "last_equity") or _req_dec(raw, "equity"),
        daytrade_count=int(raw.get("daytrade_count") or 0),
        pattern_day_trader=bool(raw.get("pattern_day_trader") or False),
        id=str(raw.get("account_number") or raw.get("id") or ""),
    )


def market_clock(raw: Json) -> MarketClock:
    ts, next_open, next_close = (_time(raw, k) for k in ("timestamp", "next_open", "next_close"))
    if ts is None or next_open is None or next_close is None:
        raise ValueError("clock: timestamp, next_open and next_close are required")
    return MarketClock(
        ts=ts, is_open=bool(_req(raw, "is_open")), next_open=next_open, next_close=next_close
    )


def session(raw: Json) -> TradingSession:
    """One calendar day; Alpaca gives New York local date and HH:MM times."""
    day = date.fromisoformat(str(_req(raw, "date")))
    opens = _hhmm(str(_req(raw, "open")))
    closes = _hhmm(str(_req(raw, "close")))
    return TradingSession(
        day=day,
        open=parse_utc(datetime.combine(day, opens, NEW_YORK).isoformat()),
        close=parse_utc(datetime.combine(day, closes, NEW_YORK).isoformat()),
        early_close=closes < _REGULAR_CLOSE,
    )


def item_ok(raw: Json) -> bool:
    """Whether one item of a 207 multi-status reply (cancel-all, close-all) succeeded."""
    status = _req(raw, "status")
    if isinstance(status, bool) or not isinstance(status, int | str):
        raise ValueError(f"multi-status item: status {status!r} is not an HTTP code")
    return 200 <= int(status) < 300


def close_result(raw: Json) -> CloseResult:
    """One item of the 207 reply to ``DELETE /v2/positions``."""
    symbol = str(_req(raw, "symbol")).upper()
    status = int(_req(raw, "status"))
    body = raw.get("body")
    ok = item_ok(raw)
    placed: BrokerOrder | None = None
    message = ""
    if isinstance(body, Mapping):
        if ok and "id" in body:
            placed = order(body)
        elif not ok:
            message = str(body.get("message") or "")
    return CloseResult(symbol=symbol, ok=ok, status=status, order=placed, message=message)


def side(word: str) -> Side:
    # Activities say sell_short for a short sale; the direction is what we track.
    text = word.strip().lower()
    if text.startswith("sell"):
        return Side.SELL
    if text == "buy":
        return Side.BUY
    raise ValueError(f"unknown side {word!r}")


def decimal_text(value: Decimal) -> str:
    """A quantity or price as Alpaca writes it in its strings: plain digits, no exponent, no
    trailing zeros ("2", "2.0" and "2.000" are the same quantity: one spelling)."""
    return format(value.normalize(), "f") if value != ZERO else "0"


def json_object(raw: object) -> Json:
    """``raw`` when it is a JSON object, else ``ValueError``."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    return raw


def json_list(raw: object) -> list[Json]:
    """``raw`` when it is a JSON array of objects, else ``ValueError``."""
    if not isinstance(raw, list):
        raise ValueError(f"expected a JSON array, got {type(raw).__name__}")
    return [json_object(item) for item in raw]


# -- helpers ---------------------------------------------------------------------------------


def _req(raw: Json, key: str) -> Any:
    value = raw.get(key)
    if value is None:
        raise ValueError(f"missing field {key!r}")
    return value


def _mapping(raw: Json, key: str) -> Json:
    value = _req(raw, key)
    if not isinstance(value, Mapping):
        raise ValueError(f"field {key!r} is not an object")
    return value


def _text(raw: Json, key: str) -> str:
    value = _req(raw, key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} is not a non-empty string")
    return value


def _amount(raw: Json, key: str) -> Decimal | None:
    """A quantity or price: absent, or a finite number >= 0 (sides carry the direction)."""
    value = _dec(raw, key)
    if value is not None and value < ZERO:
        raise ValueError(f"field {key!r} is negative: {value}")
    return value


def _dec(raw: Json, key: str) -> Decimal | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if type(value) is str:  # how Alpaca sends numbers; every trade update has several
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{key}: {value!r} is not a number") from None
        if number.is_finite():
            return number
    return to_decimal(value, field=key)


def _req_dec(raw: Json, key: str) -> Decimal:
    return to_decimal(_req(raw, key), field=key)


def _time(raw: Json, key: str) -> datetime | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if type(value) is str:  # Alpaca's RFC 3339 in UTC ("...Z"): nothing to convert
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is UTC:
                return parsed
    return parse_utc(str(value), field=key)


def _hhmm(text: str) -> time:
    digits = text.replace(":", "")
    if len(digits) != 4 or not digits.isdigit():
        raise ValueError(f"calendar time {text!r} is not HH:MM")
    return time(int(digits[:2]), int(digits[2:]))


def _order_type(raw: Json) -> OrderType:
    word = str(raw.get("type") or raw.get("order_type") or "market").lower()
    # Orders placed outside the bot may be stops; they are tracked by whether they carry a
    # limit price, which is all our order book needs.
    return OrderType.LIMIT if word in ("limit", "stop_limit") else OrderType.MARKET


def _tif(word: str) -> TimeInForce:
    text = word.lower()
    if text == "gtc":
        return TimeInForce.GTC
    if text in ("ioc", "fok"):
        return TimeInForce.IOC
    return TimeInForce.DAY
