"""Venue records -> Alpaca's documented JSON (trading-api.openapi.json, market-data-api).

REST and the trade stream send money and quantities as strings; the market-data stream and
the bars endpoint send prices as JSON numbers. Timestamps are RFC-3339 in UTC with ``Z``,
except the clock, which Alpaca gives in New York time with its offset.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from engine.calendar import MarketCalendar
from engine.clock import NEW_YORK
from engine.domain import ZERO, Account, Bar, MarketClock, Position, Side, Tick, TradingSession
from engine.sim.models import ExecutionRecord, OrderRecord, TradeUpdateRecord

Json = dict[str, Any]

# Error codes Alpaca puts in {"code": ..., "message": ...} bodies.
BAD_REQUEST = 40010000
UNPROCESSABLE = 40010001
UNAUTHORIZED = 40110000
FORBIDDEN = 40310000
NOT_FOUND = 40410000
NOT_CANCELABLE = 42210000
TOO_MANY_REQUESTS = 42910000
INTERNAL = 50010000

# Primary listings for the exchange field of positions; anything else says NASDAQ.
LISTINGS = {"SPY": "ARCA", "IWM": "ARCA", "DIA": "ARCA", "QQQ": "NASDAQ"}
PLPC_STEP = Decimal("0.0000000001")


def error(code: int, message: str, **extra: object) -> Json:
    return {"code": code, "message": message, **extra}


def num(value: Decimal) -> str:
    """A Decimal as Alpaca writes numbers in strings: no exponent, no trailing zeros."""
    if value == ZERO:
        return "0"
    return format(value.normalize(), "f")


def opt_num(value: Decimal | None) -> str | None:
    return None if value is None else num(value)


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def opt_rfc3339(ts: datetime | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def new_york(ts: datetime) -> str:
    return ts.astimezone(NEW_YORK).isoformat()


def asset_id(symbol: str) -> str:
    """A stable asset id per symbol (Alpaca's are UUIDs fixed per asset)."""
    return str(uuid5(NAMESPACE_URL, f"fake-alpaca/asset/{symbol.upper()}"))


def account_id(key_id: str) -> str:
    return str(uuid5(NAMESPACE_URL, f"fake-alpaca/account/{key_id}"))


def symbol_for_asset(ident: str, symbols: Iterable[str]) -> str:
    """Alpaca accepts a symbol or an asset id wherever a position is named."""
    try:
        UUID(ident)
    except ValueError:
        return ident.upper()
    return next((s for s in symbols if asset_id(s) == ident.lower()), ident.upper())


def order_json(order: OrderRecord) -> Json:
    """Every field of Alpaca's Order, nulls included, as GET /v2/orders shows them."""
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "created_at": rfc3339(order.created_at),
        "updated_at": rfc3339(order.updated_at),
        "submitted_at": rfc3339(order.submitted_at),
        "filled_at": opt_rfc3339(order.filled_at),
        "expired_at": opt_rfc3339(order.expired_at),
        "expires_at": opt_rfc3339(order.expires_at),
        "canceled_at": opt_rfc3339(order.canceled_at),
        "failed_at": opt_rfc3339(order.failed_at),
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": asset_id(order.symbol),
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "notional": None,
        "qty": num(order.qty),
        "filled_qty": num(order.filled_qty),
        "filled_avg_price": opt_num(order.filled_avg_price),
        "order_class": "",
        "order_type": order.type.value,
        "type": order.type.value,
        "side": order.side.value,
        "time_in_force": order.time_in_force.value,
        "limit_price": opt_num(order.limit_price),
        "stop_price": None,
        "status": order.status,
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "source": None,
        "subtag": None,
    }


def trade_update_json(update: TradeUpdateRecord) -> Json:
    """One ``trade_updates`` message; execution fields only on fills, as Alpaca sends them."""
    data: Json = {
        "event": update.event,
        "order": order_json(update.order),
        "timestamp": rfc3339(update.timestamp),
    }
    if update.execution_id is not None:
        data["execution_id"] = update.execution_id
    if update.price is not None:
        data["price"] = num(update.price)
    if update.qty is not None:
        data["qty"] = num(update.qty)
    if update.position_qty is not None:
        data["position_qty"] = num(update.position_qty)
    return {"stream": "trade_updates", "data": data}


def position_json(position: Position, *, qty_available: Decimal, lastday_price: Decimal) -> Json:
    qty = position.qty
    price = position.current_price or position.avg_entry_price
    market_value = qty * price
    cost_basis = qty * position.avg_entry_price
    unrealized = market_value - cost_basis
    intraday = qty * (price - lastday_price)
    lastday_value = abs(qty * lastday_price)
    return {
        "asset_id": asset_id(position.symbol),
        "symbol": position.symbol,
        "exchange": LISTINGS.get(position.symbol, "NASDAQ"),
        "asset_class": "us_equity",
        "asset_marginable": True,
        "avg_entry_price": num(position.avg_entry_price),
        "qty": num(qty),
        "qty_available": num(qty_available),
        "side": "long" if qty > ZERO else "short",
        "market_value": num(market_value),
        "cost_basis": num(cost_basis),
        "unrealized_pl": num(unrealized),
        "unrealized_plpc": _ratio(unrealized, abs(cost_basis)),
        "unrealized_intraday_pl": num(intraday),
        "unrealized_intraday_plpc": _ratio(intraday, lastday_value),
        "current_price": num(price),
        "lastday_price": num(lastday_price),
        "change_today": _ratio(price - lastday_price, lastday_price),
    }


def _ratio(part: Decimal, whole: Decimal) -> str:
    return "0" if whole == ZERO else num((part / whole).quantize(PLPC_STEP))


def account_json(
    account: Account,
    positions: list[Position],
    *,
    ident: str,
    created_at: datetime,
    balance_asof: date,
) -> Json:
    """GET /v2/account for a reg-T margin account (multiplier 2)."""
    long_value = sum(
        (p.qty * (p.current_price or p.avg_entry_price) for p in positions if p.qty > ZERO), ZERO
    )
    short_value = sum(
        (p.qty * (p.current_price or p.avg_entry_price) for p in positions if p.qty < ZERO), ZERO
    )
    gross = long_value - short_value
    return {
        "id": ident,
        "account_number": "PA" + ident.replace("-", "")[:10].upper(),
        "status": "ACTIVE",
        "crypto_status": "INACTIVE",
        "currency": "USD",
        "buying_power": num(account.buying_power),
        "regt_buying_power": num(account.buying_power),
        "daytrading_buying_power": num(account.buying_power),
        "non_marginable_buying_power": num(max(account.cash, ZERO)),
        "options_buying_power": num(max(account.cash, ZERO)),
        "cash": num(account.cash),
        "accrued_fees": "0",
        "pending_transfer_out": "0",
        "pending_transfer_in": "0",
        "pending_reg_taf_fees": "0",
        "intraday_adjustments": "0",
        "portfolio_value": num(account.equity),
        "equity": num(account.equity),
        "last_equity": num(account.last_equity),
        "long_market_value": num(long_value),
        "short_market_value": num(short_value),
        "initial_margin": num(gross / 2),
        "maintenance_margin": num(gross * Decimal("0.3")),
        "last_maintenance_margin": "0",
        "sma": "0",
        "multiplier": "2",
        "pattern_day_trader": account.pattern_day_trader,
        "daytrade_count": account.daytrade_count,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "shorting_enabled": True,
        "created_at": rfc3339(created_at),
        "balance_asof": balance_asof.isoformat(),
        "options_approved_level": 0,
        "options_trading_level": 0,
    }


def activity_json(execution: ExecutionRecord, *, account: str) -> Json:
    """A FILL account activity; its id is the execution id of the trade update."""
    return {
        "id": execution.id,
        "account_id": account,
        "activity_type": "FILL",
        "transaction_time": rfc3339(execution.transaction_time),
        "type": "fill" if execution.leaves_qty == ZERO else "partial_fill",
        "price": num(execution.price),
        "qty": num(execution.qty),
        "side": execution.side.value,
        "symbol": execution.symbol,
        "leaves_qty": num(execution.leaves_qty),
        "cum_qty": num(execution.cum_qty),
        "order_id": execution.order_id,
        "order_status": execution.order_status,
    }


def clock_json(clock: MarketClock) -> Json:
    return {
        "timestamp": new_york(clock.ts),
        "is_open": clock.is_open,
        "next_open": new_york(clock.next_open),
        "next_close": new_york(clock.next_close),
    }


def calendar_json(session: TradingSession, calendar: MarketCalendar) -> Json:
    """One calendar day: HH:MM local times, extended session HHMM, T+1 settlement."""
    settlement = calendar.next_session(session.close).day
    opens = session.open.astimezone(NEW_YORK)
    closes = session.close.astimezone(NEW_YORK)
    regular = opens.hour == 9 and opens.minute == 30
    return {
        "date": session.day.isoformat(),
        "open": opens.strftime("%H:%M"),
        "close": closes.strftime("%H:%M"),
        "session_open": "0400" if regular else opens.strftime("%H%M"),
        "session_close": "2000" if regular else closes.strftime("%H%M"),
        "settlement_date": settlement.isoformat(),
    }


def close_refused_json(symbol: str, requested: Decimal, available: Decimal, held: Decimal) -> Json:
    """The 403 Alpaca gives when a position's shares are held by open orders."""
    return error(
        FORBIDDEN,
        f"insufficient qty available for order (requested: {num(requested)}, "
        f"available: {num(available)})",
        available=num(available),
        existing_qty=num(requested),
        held_for_orders=num(held),
        symbol=symbol,
    )


# -- market data: numbers, not strings ------------------------------------------------------


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def bar_body(bar: Bar) -> Json:
    """A bar as the bars endpoint and the stream carry it (``n`` and ``vw`` are synthetic:
    the venue's bars have neither)."""
    typical = (bar.high + bar.low + bar.close) / 3
    return {
        "t": rfc3339(bar.ts),
        "o": float(bar.open),
        "h": float(bar.high),
        "l": float(bar.low),
        "c": float(bar.close),
        "v": _number(bar.volume),
        "n": max(1, int(bar.volume) // 100),
        "vw": float(typical.quantize(Decimal("0.0001"))),
    }


def bar_message(bar: Bar) -> Json:
    return {"T": "b", "S": bar.symbol, **bar_body(bar)}


def trade_message(tick: Tick, trade_id: int) -> Json:
    return {
        "T": "t",
        "S": tick.symbol,
        "i": trade_id,
        "x": "V",
        "p": float(tick.price),
        "s": _number(tick.size),
        "t": rfc3339(tick.ts),
        "c": ["@"],
        "z": "B" if LISTINGS.get(tick.symbol) == "ARCA" else "C",
    }


def closing_side(qty: Decimal) -> Side:
    return Side.SELL if qty > ZERO else Side.BUY
