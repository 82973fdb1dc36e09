"""The backtest runner: stored bars through the engine's own parts, synchronously.

No second implementation of anything that decides a trade: the ``StrategyHost`` turns each
closed bar into an order intent, the ``RiskGate`` checks it against the snapshot
``engine.risk.context.build_risk_context`` builds (the builder the live order path uses),
the ``SimExchange`` fills it (slippage, commission, partial fills, buying power) and the
``Portfolio`` books the fills. The runner only does what the engine's asyncio layers do
around them, in the order the live replay does it at maximum speed (``engine.feed.replay``,
``engine.bar_path``):

1. the clock moves to the minute's close (bar start + 1 minute);
2. every bar of the minute reaches the exchange, which matches the orders still open at
   that close (an order placed while the market was closed fills at the next session's
   first close);
   every fill reaches the portfolio (and its strategy's ``on_fill``) as the exchange makes
   it, as the engine's fill path applies fills of its own orders at once;
3. a new New York trading day starts the portfolio's day (start equity = equity then);
4. per symbol in alphabetical order: mark the portfolio at the close, show the bar to the
   strategy (``may_trade`` False while an order of that symbol is open or trading is
   halted); an order it asks for goes through the gate to the exchange, which fills a
   market order at once at this close with slippage when the market is open;
5. the minute's equity is recorded and the daily loss limit checked (a breach halts and
   flattens, as the engine does; the backtest lifts that halt at the next day's start).

A strategy only ever sees bars that have closed, oldest first, each once: it gets each bar
from the host after the clock has passed its close, and holds no reference to the data.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from operator import attrgetter

from config import Settings
from config.settings import RiskSettings
from engine.backtest.results import BacktestResult, DayRow, RoundTrips, TradeRow
from engine.broker.sim import to_trade_update
from engine.buying_power import margin_buying_power, opening_qty
from engine.calendar import MarketCalendar
from engine.clock import ReplayClock, TradingDays
from engine.domain import ZERO, Bar, Fill, TradingState, usd
from engine.portfolio import Portfolio
from engine.risk.context import build_risk_context
from engine.risk.gate import PDT_MIN_EQUITY, LossHaltLatch, RiskGate, loss_limit_breached
from engine.sim.exchange import SimExchange
from engine.sim.models import CommissionModel, OrderRecord, SlippageModel, TradeUpdateRecord
from engine.strategy.host import OrderIntent, StrategyHost
from engine.strategy.loader import StrategySpec, load_strategies

BAR_LENGTH = timedelta(minutes=1)
FLATTEN = "flatten"

Progress = Callable[[int], None]
"""Called now and then with the number of bars read so far."""


@dataclass(frozen=True)
class BacktestConfig:
    specs: tuple[StrategySpec, ...]
    risk: RiskSettings
    starting_cash: Decimal = Decimal(100_000)
    slippage_bps: Decimal = ZERO
    commission_per_share: Decimal = ZERO
    commission_min: Decimal = ZERO
    max_fill_qty: Decimal = ZERO
    """Largest quantity one execution fills (0: each order in one execution)."""
    trade_from: datetime | None = None
    """Bars before this are warm-up history only (as the live replay's history is); None:
    every bar is traded and the host drops signals until each strategy is warm."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        specs: Sequence[StrategySpec] | None = None,
        *,
        trade_from: datetime | None = None,
    ) -> BacktestConfig:
        """The configured strategies (or ``specs``), risk limits and simulator pricing."""
        sim = settings.sim
        return cls(
            specs=tuple(load_strategies(settings.strategy.slots) if specs is None else specs),
            risk=settings.risk,
            starting_cash=sim.starting_cash,
            slippage_bps=sim.slippage_bps,
            commission_per_share=sim.commission_per_share,
            commission_min=sim.commission_min,
            max_fill_qty=sim.max_fill_qty,
            trade_from=trade_from,
        )

    @property
    def allowed_symbols(self) -> list[str]:
        """``RISK_ALLOWED_SYMBOLS``, or every strategy's symbols (as the engine's settings)."""
        return list(self.risk.allowed_symbols) or [s for spec in self.specs for s in spec.symbols]


class BacktestRunner:
    """One run over one stream of bars. Build a new runner for every run."""

    def __init__(
        self,
        config: BacktestConfig,
        *,
        progress: Progress | None = None,
        progress_every: int = 20_000,
    ) -> None:
        self.config = config
        self._progress_every = max(1, progress_every)
        self.host = StrategyHost(config.specs)
        self.gate = RiskGate(config.risk, config.allowed_symbols)
        self.portfolio = Portfolio(config.starting_cash)
        self.calendar = MarketCalendar()
        self.result = BacktestResult(starting_cash=config.starting_cash)
        self.state = TradingState.ACTIVE
        self._progress = progress
        self._clock: ReplayClock | None = None
        self._exchange: SimExchange | None = None
        self._days = TradingDays()
        self._day: date | None = None
        self._loss_halts = LossHaltLatch()
        self._orders_today = 0
        self._known_ids: set[str] = set()
        self._intents: dict[str, OrderIntent] = {}
        self._open: dict[str, dict[str, OrderRecord]] = {}
        """Per symbol, its open orders as the exchange last reported them."""
        self._priced: set[str] = set()
        """Symbols the exchange holds a position or an open order in."""
        self._trips = RoundTrips(self.result.round_trips)
        self._cash_at_close = config.starting_cash
        self._owned = frozenset(self.host.symbols)
        # Per symbol, the newest bars before ``trade_from``: exactly the warm-up it asks for.
        self._history: dict[str, deque[Bar]] = {
            s: deque(maxlen=self.host.warmup_bars(s)) for s in self._owned
        }

    # ---- the run -------------------------------------------------------------------------

    def run(self, bars: Iterable[Bar]) -> BacktestResult:
        """Every bar (in time order) through the parts; the result once they are done."""
        started = time.perf_counter()
        result = self.result
        trade_from = self.config.trade_from
        last_ts: datetime | None = None
        read = 0
        for ts, minute in groupby(bars, key=attrgetter("ts")):
            if last_ts is not None and ts <= last_ts:
                raise ValueError(f"bars are not in time order: {ts.isoformat()} after {last_ts}")
            last_ts = ts
            group = sorted(minute, key=attrgetter("symbol"))
            read += len(group)
            if trade_from is not None and ts < trade_from:
                for bar in group:
                    if bar.symbol in self._owned:
                        self._history[bar.symbol].append(bar)
            else:
                self._minute(ts, group)
            if self._progress is not None and read - result.bars >= self._progress_every:
                result.bars = read
                self._progress(read)
        result.bars = read
        self._finish()
        result.elapsed_s = time.perf_counter() - started
        return result

    def _minute(self, ts: datetime, group: Sequence[Bar]) -> None:
        now = ts + BAR_LENGTH
        exchange = self._exchange or self._start(now)
        assert self._clock is not None
        self._clock.set(now)
        exchange.on_clock(now)  # DAY orders expire, the close's equity is recorded
        priced = self._priced
        for bar in group:
            # A price changes nothing at the exchange for a symbol it holds no position or
            # open order in; such a bar is given to it just before an order (``_submit``).
            if bar.symbol in priced:
                exchange.on_price(bar.symbol, bar.close, bar.ts)
        day = self._days.of(now)
        if day != self._day:
            self._roll(day)
        portfolio, host = self.portfolio, self.host
        halted = self.state is TradingState.HALTED
        for bar in group:
            symbol = bar.symbol
            if symbol not in self._owned:
                continue
            portfolio.mark(symbol, bar.close)
            may_trade = not halted and not self._open.get(symbol)
            intent = host.on_bar(bar, portfolio.qty(symbol), may_trade=may_trade)
            if intent is not None:
                if symbol not in priced:
                    exchange.on_bar(bar)
                self._submit(intent, now)
        self.result.traded_bars += len(group)
        self._after_minute(now)

    def _start(self, now: datetime) -> SimExchange:
        """The exchange and the strategies' warm-up, at the first traded minute."""
        config = self.config
        self._clock = ReplayClock(now - BAR_LENGTH)
        exchange = SimExchange(
            None,
            starting_cash=config.starting_cash,
            slippage=SlippageModel(config.slippage_bps),
            commission=CommissionModel(config.commission_per_share, config.commission_min),
            max_fill_qty=config.max_fill_qty,
            calendar=self.calendar,
            clock=self._clock,
        )
        exchange.set_listener(self._on_update)
        self._exchange = exchange
        for symbol, history in self._history.items():
            self.host.warm_up(symbol, list(history), ZERO)
            if history:
                self.portfolio.mark(symbol, history[-1].close)
        self._history.clear()
        return exchange

    def _roll(self, day: date) -> None:
        if self._day is not None and self.result.curve:
            self._close_day(self._day)
        self._day = day
        self._orders_today = 0
        if self.state is TradingState.HALTED:
            self.state = TradingState.ACTIVE  # a person would resume; see docs/backtest.md
        self.portfolio.start_day(day, self.portfolio.equity)

    def _close_day(self, day: date) -> None:
        _, equity = self.result.curve[-1]
        self.result.days.append(DayRow(day, equity, self._cash_at_close))

    def _after_minute(self, now: datetime) -> None:
        portfolio, result = self.portfolio, self.result
        result.minutes += 1
        if portfolio.gross_exposure != ZERO:
            result.minutes_in_market += 1
        pnl = portfolio.day_pnl
        day = self._day
        if (
            day is not None
            and loss_limit_breached(pnl, self.config.risk)
            and self._loss_halts.claim(day)
        ):
            self._loss_halt(now, pnl or ZERO)
        result.curve.append((now, portfolio.equity))
        self._cash_at_close = portfolio.cash

    def _loss_halt(self, now: datetime, pnl: Decimal) -> None:
        """The engine's loss-limit halt: HALTED, every order cancelled, every position
        closed (at this close, with slippage)."""
        assert self._exchange is not None
        self.state = TradingState.HALTED
        limit = self.config.risk.daily_loss_limit
        self.result.halts.append(
            f"{now.isoformat()}: daily loss limit hit: day P&L {usd(pnl)} <= {usd(-limit)}"
        )
        self._exchange.cancel_all()
        self._exchange.close_all(cancel_orders=True)

    def _finish(self) -> None:
        if self._day is not None and self.result.curve:
            self._close_day(self._day)
        self.host.end_day()
        self.result.paused = dict(self.host.paused)

    # ---- orders and fills ----------------------------------------------------------------

    def _submit(self, intent: OrderIntent, now: datetime) -> None:
        exchange = self._exchange
        assert exchange is not None
        request = intent.request()
        symbol = request.symbol
        context = build_risk_context(
            symbol,
            now=now,
            state=self.state,
            market_open=self.calendar.is_open(now),
            portfolio=self.portfolio,
            open_order_qty=self._open_qty(symbol),
            buying_power=self._buying_power(),
            orders_today=self._orders_today,
            day_trades_5d=self._day_trades(exchange),
            known_client_order_ids=self._known_ids,
        )
        decision = self.gate.check(request, context)
        if not decision.approved:
            assert decision.reason is not None
            self.result.rejections[decision.reason.value] += 1
            return
        self._orders_today += 1
        self._known_ids.add(request.client_order_id)
        self._intents[request.client_order_id] = intent
        exchange.submit(
            symbol,
            request.side,
            request.qty,
            request.order_type,
            request.time_in_force,
            request.limit_price,
            request.client_order_id,
        )

    def _buying_power(self) -> Decimal:
        """The simulated account's buying power by its own rule
        (``engine.buying_power.margin_buying_power``), from the book: the portfolio and the
        exchange mark the same closes, so this is the account's figure without summing
        every position on each order (what the live gate's estimate does between broker
        snapshots)."""
        portfolio = self.portfolio
        reserved = ZERO
        for orders in self._open.values():
            for order in orders.values():
                price = order.limit_price or portfolio.last_price(order.symbol)
                if price is not None:
                    held = portfolio.qty(order.symbol)
                    reserved += opening_qty(held, order.side, order.remaining_qty) * price
        equity, gross = portfolio.equity, portfolio.gross_exposure
        return max(ZERO, margin_buying_power(equity, gross, reserved))

    def _day_trades(self, exchange: SimExchange) -> int:
        """The account's day trades in five sessions; the gate only reads them below the
        pattern-day-trader equity, so they are only counted then."""
        if not self.config.risk.pdt_guard or self.portfolio.equity >= PDT_MIN_EQUITY:
            return 0
        return exchange.account().daytrade_count

    def _open_qty(self, symbol: str) -> Decimal:
        orders = self._open.get(symbol, {}).values()
        return sum((o.remaining_qty * o.side.sign for o in orders), ZERO)

    def _on_update(self, record: TradeUpdateRecord) -> None:
        """Every exchange update, as it happens: the engine's fill path applies a fill of
        its own order to the book at once (``engine.fill_path``)."""
        order = record.order
        if order.is_open:
            self._open.setdefault(order.symbol, {})[order.id] = order
        elif order.id in self._open.get(order.symbol, {}):
            del self._open[order.symbol][order.id]
        if record.event == "rejected":
            self.result.rejections[f"broker:{record.event}"] += 1
        fill = to_trade_update(record).to_fill()
        if fill is not None:
            self._book(fill)
        symbol = order.symbol
        if self._open.get(symbol) or self.portfolio.qty(symbol) != ZERO:
            self._priced.add(symbol)
        else:
            self._priced.discard(symbol)

    def _book(self, fill: Fill) -> None:
        intent = self._intents.get(fill.client_order_id)
        strategy = intent.strategy if intent is not None else FLATTEN
        reason = intent.reason if intent is not None else "daily loss limit"
        before = self.portfolio.qty(fill.symbol)
        realized = self.portfolio.apply_fill(fill)
        after = self.portfolio.qty(fill.symbol)
        self.result.trades.append(
            TradeRow(
                fill.ts,
                fill.symbol,
                fill.side,
                fill.qty,
                fill.price,
                fill.commission,
                strategy,
                reason,
                realized,
                fill.client_order_id,
            )
        )
        self._trips.on_fill(fill, strategy, before, after, realized)
        if intent is not None:
            self.host.on_fill(fill, strategy)
