"""The pre-trade risk gate: a pure, synchronous check of one order against a snapshot.

Checks run in this order; the first failure decides the reason:

 1. INVALID_ORDER            all orders
 2. DUPLICATE_CLIENT_ORDER_ID all orders
 3. HALTED                   all orders (cancels are not orders and never reach the gate)
 4. REDUCING_ONLY            orders that do not only reduce, while REDUCING
 5. MARKET_CLOSED            all orders, when ``require_market_open``
 6. SYMBOL_NOT_ALLOWED       increasing orders only
 7. NO_PRICE                 increasing orders only
 8. FAT_FINGER_NOTIONAL      increasing orders only
 9. FAT_FINGER_PRICE         all limit orders, when there is a last price
10. MAX_POSITION_QTY, MAX_POSITION_NOTIONAL, MAX_GROSS_EXPOSURE, BUYING_POWER,
    DAILY_LOSS_LIMIT         increasing orders only
11. MAX_ORDERS_PER_DAY       all orders
12. PATTERN_DAY_TRADER       any order that closes (fully or partly) a position opened today

The principle: a trader must always be able to reduce risk, except where a rule forbids it.
An order "only reduces" when it shrinks the position without crossing zero, both against the
current position and against the position its symbol's open orders would leave (so two exits
racing each other cannot flip the position). Such an order cannot add exposure in any
outcome, so everything that limits exposure is skipped for it: the symbol allow-list (a
position in a symbol taken off the list must still be closable), the price requirement (an
exit must work while market data is down), the order-notional fat-finger check (its size is
capped by the position, and closing a position larger than one order's limit must not need
several orders), the position, exposure and buying-power limits, and the daily loss limit
(which exists to stop new risk, not exits).

The rules that do bind exits: HALTED stops everything (flatten goes through the broker's own
close call, not the gate); a closed market when the settings require it open; a limit price
far from the last price (an exit with a typo in its price is still a typo; a market order or a
sane limit always passes); the orders-per-day cap (a runaway loop sending exits is still a
runaway loop); and the pattern-day-trader guard, which must look at exits precisely because
closing a position opened the same day is what makes a day trade. It is placed last so that
any other reason, which the trader can act on, is reported first.
"""

from __future__ import annotations

from collections.abc import Collection, Container
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from config.settings import RiskSettings
from engine.domain import ZERO, OrderRequest, OrderType, Side, TradingState, usd

PDT_MIN_EQUITY = Decimal(25_000)
PDT_MAX_DAY_TRADES = 3
"""Day trades allowed in five trading days below ``PDT_MIN_EQUITY``; one more flags the account."""

_PCT_STEP = Decimal("0.01")
_MAX_LISTED_SYMBOLS = 10


class RejectReason(StrEnum):
    INVALID_ORDER = "invalid_order"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    HALTED = "halted"
    REDUCING_ONLY = "reducing_only"
    MARKET_CLOSED = "market_closed"
    SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
    NO_PRICE = "no_price"
    FAT_FINGER_NOTIONAL = "fat_finger_notional"
    FAT_FINGER_PRICE = "fat_finger_price"
    MAX_POSITION_QTY = "max_position_qty"
    MAX_POSITION_NOTIONAL = "max_position_notional"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    BUYING_POWER = "buying_power"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    MAX_ORDERS_PER_DAY = "max_orders_per_day"
    PATTERN_DAY_TRADER = "pattern_day_trader"


@dataclass(frozen=True)
class RiskDecision:
    approved: bool
    reason: RejectReason | None
    detail: str
    """One short sentence for the trader, with the numbers."""

    @classmethod
    def approve(cls) -> RiskDecision:
        return cls(True, None, "")

    @classmethod
    def reject(cls, reason: RejectReason, detail: str) -> RiskDecision:
        return cls(False, reason, detail)


@dataclass(frozen=True)
class RiskContext:
    """A snapshot the engine builds for each order."""

    state: TradingState
    market_open: bool
    position_qty: Decimal
    """Current signed quantity in this symbol."""
    open_order_qty: Decimal
    """Signed quantity of this symbol's other open orders (counted toward limits)."""
    last_price: Decimal | None
    gross_exposure: Decimal
    """Current gross exposure over all symbols, at last prices."""
    buying_power: Decimal
    equity: Decimal
    day_pnl: Decimal | None
    orders_today: int
    day_trades_5d: int
    """Day trades in the last five trading days."""
    position_opened_today: bool
    """The current position in this symbol was opened today."""
    known_client_order_ids: Container[str]


def reduces_position(position_qty: Decimal, side: Side, qty: Decimal) -> bool:
    """True when the order only shrinks ``|position|`` (an exact close counts; a flip does not)."""
    if qty <= ZERO or position_qty == ZERO or side.sign * position_qty > ZERO:
        return False
    return qty <= abs(position_qty)


def order_only_reduces(request: OrderRequest, ctx: RiskContext) -> bool:
    """True when ``request`` reduces the position whether or not the open orders fill."""
    committed = ctx.position_qty + ctx.open_order_qty
    return reduces_position(ctx.position_qty, request.side, request.qty) and reduces_position(
        committed, request.side, request.qty
    )


def loss_limit_breached(day_pnl: Decimal | None, limits: RiskSettings) -> bool:
    """True when the day's P&L is at or below minus the daily loss limit (unknown P&L: False)."""
    return day_pnl is not None and day_pnl <= -limits.daily_loss_limit


class LossHaltLatch:
    """The loss limit halts at most once per trading day (a trader who lifted today's
    loss-limit halt is not halted again today). The engine's trading state
    (``TradingStateController.claim_loss_halt``, restored across restarts) and the backtest
    keep one each."""

    def __init__(self, day: date | None = None) -> None:
        self.day = day
        """The trading day the loss limit last halted on."""

    def claim(self, today: date) -> bool:
        """True once per trading day: the loss limit may halt now, and not again today."""
        # ">=": a day stamped ahead of our clock (skew across a restart) still counts.
        if self.day is not None and self.day >= today:
            return False
        self.day = today
        return True

    def halted_on(self, day: date) -> None:
        """A loss-limit halt was recorded on ``day`` (not through ``claim``)."""
        self.day = day if self.day is None else max(self.day, day)


class RiskGate:
    def __init__(self, limits: RiskSettings, allowed_symbols: Collection[str]) -> None:
        self._limits = limits
        self._allowed = frozenset(s.upper() for s in allowed_symbols)

    def allows_symbol(self, symbol: str) -> bool:
        """True for a symbol we are configured to trade."""
        return symbol.upper() in self._allowed

    def check(self, request: OrderRequest, ctx: RiskContext) -> RiskDecision:
        """Approve ``request`` or reject it with the first failing reason (see module doc)."""
        lim = self._limits
        reject = RiskDecision.reject
        problem = _invalid(request)
        if problem:
            return reject(RejectReason.INVALID_ORDER, problem)
        if request.client_order_id in ctx.known_client_order_ids:
            return reject(
                RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                f"client order id {request.client_order_id} was already used",
            )
        if ctx.state is TradingState.HALTED:
            return reject(RejectReason.HALTED, "trading is halted; only cancels are accepted")

        only_reduces = order_only_reduces(request, ctx)
        if ctx.state is TradingState.REDUCING and not only_reduces:
            return reject(
                RejectReason.REDUCING_ONLY,
                f"trading is reducing-only and {_describe(request)} would not only reduce "
                f"the {_position(ctx.position_qty + ctx.open_order_qty, request.symbol)} "
                f"position{_with_open(ctx)}",
            )
        if lim.require_market_open and not ctx.market_open:
            return reject(RejectReason.MARKET_CLOSED, "the market is closed")

        last = ctx.last_price if ctx.last_price is not None and ctx.last_price > ZERO else None
        limit = request.limit_price if request.order_type is OrderType.LIMIT else None
        price = limit if limit is not None else last
        if not only_reduces:
            symbol = request.symbol.upper()
            if not self.allows_symbol(symbol):
                return reject(
                    RejectReason.SYMBOL_NOT_ALLOWED,
                    f"{symbol} is not an allowed symbol ({self._allowed_text()})",
                )
            if price is None:
                return reject(
                    RejectReason.NO_PRICE,
                    f"no price for {symbol} yet; wait for market data or send a limit order",
                )
            notional = request.qty * price
            if notional > lim.max_order_notional:
                return reject(
                    RejectReason.FAT_FINGER_NOTIONAL,
                    f"order would be worth {usd(notional)}; limit {usd(lim.max_order_notional)}",
                )
        if limit is not None and last is not None:
            deviation = abs(limit - last) * 100 / last
            if deviation > lim.max_price_deviation_pct:
                direction = "above" if limit > last else "below"
                return reject(
                    RejectReason.FAT_FINGER_PRICE,
                    f"limit {_num(limit)} is {_pct(deviation)} {direction} the last price "
                    f"{_num(last)}; limit {_pct(lim.max_price_deviation_pct)}",
                )
        if not only_reduces and price is not None:
            mark = last if last is not None else price
            decision = self._check_exposure(request, ctx, price, mark)
            if decision is not None:
                return decision

        if ctx.orders_today >= lim.max_orders_per_day:
            return reject(
                RejectReason.MAX_ORDERS_PER_DAY,
                f"{ctx.orders_today:,} orders sent today; limit {lim.max_orders_per_day:,}",
            )
        if lim.pdt_guard and _would_day_trade(request, ctx):
            return reject(
                RejectReason.PATTERN_DAY_TRADER,
                f"closing today's {request.symbol} position would be day trade "
                f"{ctx.day_trades_5d + 1} in 5 days with equity {usd(ctx.equity)} "
                f"(under {usd(PDT_MIN_EQUITY)})",
            )
        return RiskDecision.approve()

    def _check_exposure(
        self, request: OrderRequest, ctx: RiskContext, price: Decimal, mark: Decimal
    ) -> RiskDecision | None:
        """Limits that bind orders adding exposure. ``price`` prices the order, ``mark`` the
        position."""
        lim = self._limits
        reject = RiskDecision.reject
        symbol = request.symbol.upper()
        committed = ctx.position_qty + ctx.open_order_qty
        projected = committed + request.side.sign * request.qty
        size = abs(projected)
        if size > lim.max_position_qty:
            return reject(
                RejectReason.MAX_POSITION_QTY,
                f"position would be {_position(projected, symbol)}{_with_open(ctx)}; "
                f"limit {_num(lim.max_position_qty)}",
            )
        if size * mark > lim.max_position_notional:
            return reject(
                RejectReason.MAX_POSITION_NOTIONAL,
                f"{symbol} position would be worth {usd(size * mark)}{_with_open(ctx)}; "
                f"limit {usd(lim.max_position_notional)}",
            )
        gross = ctx.gross_exposure + (size - abs(ctx.position_qty)) * mark
        if gross > lim.max_gross_exposure:
            return reject(
                RejectReason.MAX_GROSS_EXPOSURE,
                f"gross exposure would be {usd(gross)}; limit {usd(lim.max_gross_exposure)}",
            )
        # Only the part of the order that opens (beyond closing what is committed) needs money.
        closing = min(request.qty, abs(committed)) if request.side.sign * committed < 0 else ZERO
        cost = (request.qty - closing) * price
        if cost > ctx.buying_power:
            return reject(
                RejectReason.BUYING_POWER,
                f"order needs {usd(cost)} of buying power; {usd(ctx.buying_power)} available",
            )
        pnl = ctx.day_pnl
        if pnl is not None and loss_limit_breached(pnl, lim):
            return reject(
                RejectReason.DAILY_LOSS_LIMIT,
                f"day P&L is {usd(pnl)}, past the daily loss limit of "
                f"{usd(lim.daily_loss_limit)}; only orders that reduce a position are accepted",
            )
        return None

    def _allowed_text(self) -> str:
        if not self._allowed:
            return "none are configured"
        listed = sorted(self._allowed)
        text = ", ".join(listed[:_MAX_LISTED_SYMBOLS])
        more = len(listed) - _MAX_LISTED_SYMBOLS
        return f"{text} and {more} more" if more > 0 else text


def _invalid(request: OrderRequest) -> str:
    if not request.client_order_id:
        return "order has no client order id"
    if not request.symbol:
        return "order has no symbol"
    if not request.qty.is_finite() or request.qty <= ZERO:
        return f"quantity must be positive (got {request.qty})"
    if request.order_type is OrderType.LIMIT:
        price = request.limit_price
        if price is None or not price.is_finite() or price <= ZERO:
            return f"a limit order needs a positive limit price (got {price})"
    return ""


def _would_day_trade(request: OrderRequest, ctx: RiskContext) -> bool:
    closes_same_day = ctx.position_opened_today and request.side.sign * ctx.position_qty < 0
    return (
        closes_same_day and ctx.equity < PDT_MIN_EQUITY and ctx.day_trades_5d >= PDT_MAX_DAY_TRADES
    )


def _describe(request: OrderRequest) -> str:
    return f"{request.side.value} {_num(request.qty)} {request.symbol}"


def _position(qty: Decimal, symbol: str) -> str:
    if qty < ZERO:
        return f"{_num(-qty)} {symbol} short"
    return f"{_num(qty)} {symbol}"


def _with_open(ctx: RiskContext) -> str:
    if ctx.open_order_qty == ZERO:
        return ""
    return f" (counting {_num(ctx.open_order_qty)} on open orders)"


def _num(value: Decimal) -> str:
    text = format(value.normalize(), ",f")
    return "0" if text == "-0" else text


def _pct(value: Decimal) -> str:
    return f"{_num(value.quantize(_PCT_STEP))}%"
