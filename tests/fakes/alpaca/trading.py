"""Trading API v2 endpoints over a ``SimExchange`` (account, positions, orders, clock,
calendar, FILL activities), answering as trading-api.openapi.json documents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from engine.clock import trading_day
from engine.domain import ZERO, OrderType, Position, TimeInForce, to_decimal
from engine.errors import BrokerRejected, DuplicateClientOrderId, OrderNotFound
from engine.sim.exchange import SimExchange
from engine.sim.models import REJECTED, OrderRecord
from tests.fakes.alpaca.bars import BarStore
from tests.fakes.alpaca.json_models import (
    FORBIDDEN,
    INTERNAL,
    NOT_CANCELABLE,
    NOT_FOUND,
    account_json,
    calendar_json,
    clock_json,
    close_refused_json,
    closing_side,
    error,
    num,
    order_json,
    position_json,
    symbol_for_asset,
)
from tests.fakes.alpaca.knobs import Knobs
from tests.fakes.alpaca.rest import (
    ApiError,
    bad_request,
    choice,
    flag,
    integer,
    reply,
    timestamp,
    unprocessable,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CALENDAR_DEFAULT_DAYS = 30
DIRECTIONS = ("asc", "desc")


class TradingApi:
    def __init__(
        self,
        *,
        exchange: SimExchange,
        bars: BarStore,
        knobs: Knobs,
        now: Callable[[], datetime],
        account: str,
        created_at: datetime,
        order_bodies: list[dict[str, Any]] | None = None,
    ) -> None:
        self._exchange = exchange
        self._order_bodies = order_bodies if order_bodies is not None else []
        self._bars = bars
        self._knobs = knobs
        self._now = now
        self._account = account
        self._created_at = created_at

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v2/account", self.account),
            web.get("/v2/positions", self.positions),
            web.delete("/v2/positions", self.close_all_positions),
            web.get("/v2/positions/{symbol}", self.position),
            web.delete("/v2/positions/{symbol}", self.close_position),
            web.post("/v2/orders", self.submit_order),
            web.get("/v2/orders", self.orders),
            web.delete("/v2/orders", self.cancel_all_orders),
            web.get("/v2/orders:by_client_order_id", self.order_by_client_id),
            web.get("/v2/orders/{order_id}", self.order),
            web.delete("/v2/orders/{order_id}", self.cancel_order),
            web.get("/v2/clock", self.clock),
            web.get("/v2/calendar", self.calendar),
        ]

    # -- account and positions --------------------------------------------------------------

    async def account(self, request: web.Request) -> web.Response:
        positions = self._exchange.positions()
        balance_day = self._exchange.calendar.previous_session(self._now()).day
        return reply(
            account_json(
                self._exchange.account(),
                positions,
                ident=self._account,
                created_at=self._created_at,
                balance_asof=balance_day,
            )
        )

    async def positions(self, request: web.Request) -> web.Response:
        orders = self._exchange.open_orders()
        return reply([self._position(p, orders) for p in self._exchange.positions()])

    async def position(self, request: web.Request) -> web.Response:
        held = self._held_position(request.match_info["symbol"])
        if held is None:
            raise ApiError(404, NOT_FOUND, "position does not exist")
        return reply(self._position(held, self._exchange.open_orders()))

    async def close_all_positions(self, request: web.Request) -> web.Response:
        """207 with one item per position: 200 and the closing order, or 403 when refused
        (``Knobs.refuse_close``) or when open orders hold the shares."""
        if flag(request.query.get("cancel_orders"), "cancel_orders"):
            self._exchange.cancel_all()
        items: list[dict[str, Any]] = []
        for position in self._exchange.positions():
            symbol, qty = position.symbol, abs(position.qty)
            held = self._held_for_orders(position)
            if symbol in self._refused():
                refusal = close_refused_json(symbol, qty, ZERO, qty)
                items.append({"symbol": symbol, "status": 403, "body": refusal})
            elif held > ZERO:
                refusal = close_refused_json(symbol, qty, max(ZERO, qty - held), held)
                items.append({"symbol": symbol, "status": 403, "body": refusal})
            else:
                order = self._exchange.submit(
                    symbol, closing_side(position.qty), qty, OrderType.MARKET, TimeInForce.DAY
                )
                items.append({"symbol": symbol, "status": 200, "body": order_json(order)})
        return reply(items, 207)

    async def close_position(self, request: web.Request) -> web.Response:
        """Close a whole position (cancelling the symbol's open orders first, as the
        simulator does), or ``qty`` shares / ``percentage`` of it."""
        position = self._held_position(request.match_info["symbol"])
        if position is None:
            raise ApiError(404, NOT_FOUND, "position does not exist")
        symbol, held = position.symbol, abs(position.qty)
        if symbol in self._refused():
            body = close_refused_json(symbol, held, ZERO, held)
            raise ApiError(403, FORBIDDEN, body["message"], **_extra(body))
        amount = self._close_amount(request, held)
        if amount is None:
            return reply(order_json(self._exchange.close_position(symbol)))
        if amount > held:
            body = close_refused_json(symbol, amount, held, ZERO)
            raise ApiError(403, FORBIDDEN, body["message"], **_extra(body))
        order = self._exchange.submit(
            symbol, closing_side(position.qty), amount, OrderType.MARKET, TimeInForce.DAY
        )
        return reply(order_json(order))

    def _close_amount(self, request: web.Request, held: Decimal) -> Decimal | None:
        qty, percentage = request.query.get("qty"), request.query.get("percentage")
        if qty and percentage:
            raise unprocessable("qty and percentage cannot both be given")
        try:
            if qty:
                amount = to_decimal(qty, field="qty")
            elif percentage:
                share = to_decimal(percentage, field="percentage")
                if not ZERO < share <= 100:
                    raise unprocessable("percentage must be in (0, 100]")
                amount = held * share / 100
                # Only a fractional position is closed fractionally.
                step = Decimal(1) if held == held.to_integral_value() else Decimal("1e-9")
                amount = amount.quantize(step, rounding=ROUND_DOWN)
            else:
                return None
        except ValueError as exc:
            raise unprocessable(str(exc)) from None
        if amount <= ZERO:
            raise unprocessable("qty must be > 0")
        return amount

    def _held_position(self, ident: str) -> Position | None:
        positions = self._exchange.positions()
        symbol = symbol_for_asset(ident, [p.symbol for p in positions])
        return next((p for p in positions if p.symbol == symbol), None)

    def _held_for_orders(
        self, position: Position, open_orders: list[OrderRecord] | None = None
    ) -> Decimal:
        """Shares of the position that open closing-side orders already hold."""
        closing = closing_side(position.qty)
        orders = self._exchange.open_orders() if open_orders is None else open_orders
        return sum(
            (o.remaining_qty for o in orders if o.symbol == position.symbol and o.side is closing),
            ZERO,
        )

    def _position(self, position: Position, open_orders: list[OrderRecord]) -> dict[str, Any]:
        held = self._held_for_orders(position, open_orders)
        sign = 1 if position.qty > ZERO else -1
        available = max(ZERO, abs(position.qty) - held) * sign
        last = self._bars.last_close_before(position.symbol, self._now())
        price = position.current_price or position.avg_entry_price
        return position_json(position, qty_available=available, lastday_price=last or price)

    def _refused(self) -> set[str]:
        return {s.upper() for s in self._knobs.refuse_close | self._knobs.untradable}

    # -- orders -----------------------------------------------------------------------------

    async def submit_order(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise bad_request("request body format is invalid")
        self._order_bodies.append(body)
        args = _order_args(body)
        symbol = str(args["symbol"]).upper()
        if symbol in {s.upper() for s in self._knobs.untradable}:
            raise unprocessable(f"asset {symbol} is not tradable")
        try:
            order = self._exchange.submit(**args)
        except DuplicateClientOrderId:
            raise unprocessable("client_order_id must be unique") from None
        except BrokerRejected as exc:
            raise unprocessable(str(exc)) from None
        if order.status == REJECTED:
            buying_power = num(self._exchange.account().buying_power)
            raise ApiError(403, FORBIDDEN, "insufficient buying power", buying_power=buying_power)
        return reply(order_json(order))

    async def orders(self, request: web.Request) -> web.Response:
        query = request.query
        status = choice(query.get("status"), "status", ("open", "closed", "all"), "open")
        limit = integer(query.get("limit"), "limit", default=50, low=1, high=500)
        after = timestamp(query.get("after"), "after")
        until = timestamp(query.get("until"), "until")
        direction = choice(query.get("direction"), "direction", DIRECTIONS, "desc")
        side = choice(query.get("side"), "side", ("buy", "sell", ""), "")
        flag(query.get("nested"), "nested")  # validated; there are no multi-leg orders
        symbols = {s.strip().upper() for s in query.get("symbols", "").split(",") if s.strip()}
        picked = [
            (order.submitted_at, seq, order)
            for seq, order in enumerate(self._exchange.orders_since(EPOCH))
            if (status == "all" or order.is_open == (status == "open"))
            and (after is None or order.submitted_at > after)
            and (until is None or order.submitted_at < until)
            and (not symbols or order.symbol in symbols)
            and (not side or order.side.value == side)
        ]
        picked.sort(key=lambda item: (item[0], item[1]), reverse=direction == "desc")
        return reply([order_json(order) for _, _, order in picked[:limit]])

    async def order(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        try:
            return reply(order_json(self._exchange.get_order(order_id)))
        except OrderNotFound:
            raise ApiError(404, NOT_FOUND, f"order not found for {order_id}") from None

    async def order_by_client_id(self, request: web.Request) -> web.Response:
        client_order_id = request.query.get("client_order_id", "")
        if not client_order_id:
            raise unprocessable("client_order_id is required")
        order = self._exchange.order_by_client_id(client_order_id)
        if order is None:
            raise ApiError(404, NOT_FOUND, "order not found")
        return reply(order_json(order))

    async def cancel_order(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        try:
            if self._exchange.get_order(order_id).symbol in self._cancel_refused():
                raise BrokerRejected("refused by the refuse_cancel knob")
            self._exchange.cancel(order_id)
        except OrderNotFound:
            raise ApiError(404, NOT_FOUND, f"order not found for {order_id}") from None
        except BrokerRejected:
            status = self._exchange.get_order(order_id).status
            raise ApiError(422, NOT_CANCELABLE, f'order is already in "{status}" state') from None
        return web.Response(status=204)

    async def cancel_all_orders(self, request: web.Request) -> web.Response:
        """207, one item per open order: 200 and the order, or 500 when it cannot be
        canceled (``Knobs.refuse_cancel``), as Alpaca documents."""
        refused = self._cancel_refused()
        items: list[dict[str, Any]] = []
        for order in self._exchange.open_orders():
            if order.symbol in refused:
                body = error(INTERNAL, "order is not cancelable")
                items.append({"id": order.id, "status": 500, "body": body})
            else:
                done = self._exchange.cancel(order.id)
                items.append({"id": done.id, "status": 200, "body": order_json(done)})
        return reply(items, 207)

    def _cancel_refused(self) -> set[str]:
        return {s.upper() for s in self._knobs.refuse_cancel}

    # -- market clock and calendar ----------------------------------------------------------

    async def clock(self, request: web.Request) -> web.Response:
        self._exchange.on_clock(self._now())
        return reply(clock_json(self._exchange.calendar.clock(self._now())))

    async def calendar(self, request: web.Request) -> web.Response:
        """Sessions from ``start`` to ``end`` (dates, both included). Without them the fake
        answers today and the next 30 days rather than Alpaca's 1970-2029."""
        start = _day(request.query.get("start"), "start") or trading_day(self._now())
        end = _day(request.query.get("end"), "end") or start + timedelta(CALENDAR_DEFAULT_DAYS)
        calendar = self._exchange.calendar
        return reply([calendar_json(s, calendar) for s in calendar.sessions(start, end)])


def _order_args(body: dict[str, Any]) -> dict[str, Any]:
    """Validate what the simulator cannot express; the exchange checks the rest."""
    if (body.get("order_class") or "simple") != "simple":
        raise unprocessable(f"order_class {body['order_class']!r} is not supported by the fake")
    if body.get("notional") is not None:
        raise unprocessable("notional orders are not supported by the fake")
    for field in ("stop_price", "trail_price", "trail_percent", "take_profit", "stop_loss"):
        if body.get(field) is not None:
            raise unprocessable(f"{field} is not supported by the fake")
    if flag(body.get("extended_hours"), "extended_hours"):
        raise unprocessable("extended_hours orders are not supported by the fake")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise unprocessable("symbol is required")
    raw_qty = body.get("qty")
    if raw_qty is None:
        raise unprocessable("qty is required")
    client_order_id = body.get("client_order_id")
    if client_order_id is not None and not isinstance(client_order_id, str):
        raise unprocessable("client_order_id must be a string")
    try:
        qty = to_decimal(raw_qty, field="qty")
    except ValueError as exc:
        raise unprocessable(str(exc)) from None
    return {
        "symbol": symbol,
        "side": body.get("side"),
        # alpaca-py sends 3.0 for 3 shares; keep the venue's quantities canonical.
        "qty": qty.quantize(Decimal(1)) if qty == qty.to_integral_value() else qty,
        "type": body.get("type"),
        "time_in_force": body.get("time_in_force"),
        "limit_price": body.get("limit_price"),
        "client_order_id": client_order_id or None,
    }


def _day(value: str | None, name: str) -> date | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
    except ValueError:
        raise bad_request(f"invalid {name}: {value!r}") from None
    parsed = timestamp(text, name, status=400)
    return None if parsed is None else trading_day(parsed)


def _extra(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("code", "message")}
