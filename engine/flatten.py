"""Flatten the whole book: fast, certain, and honest about what is left.

One broker call cancels every open order and closes every position; as soon as it has
answered, the broker is asked (positions and open orders, side by side) whether it is flat,
while the trade-update stream ticks the symbols off as their fills arrive; a book not flat
yet is asked again when the stream says every symbol closed, or after a short wait that
grows from 50 ms (so a dropped stream costs little); leftovers without a working close order
are retried symbol by symbol until a deadline. A second flatten while one runs joins it
instead of starting another. While it runs, a mark in the journal (``engine.flatten_mark``)
lets a restart finish a flatten a kill interrupted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime
from decimal import Decimal
from uuid import uuid4

from engine.backoff import backoff_delay
from engine.broker.port import Broker, BrokerOrder, CloseResult
from engine.broker.resilience import safety_calls
from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import ZERO, OrderRequest, Position, Side, TradingState
from engine.errors import BrokerError, BrokerUnavailable, TradingStateError
from engine.events import FillReceived
from engine.execution import ExecutionManager
from engine.flatten_mark import FlattenMark, MarkStore
from engine.flatten_mark import load as load_mark
from engine.flatten_mark import save as save_mark
from engine.flatten_report import (
    Closes,
    FlattenProgress,
    FlattenReport,
    ProgressCallback,
    SymbolOutcome,
    market_closed_note,
    outcomes,
    queued_outcomes,
)
from engine.market_hours import MarketHours
from engine.orders import make_client_order_id
from engine.portfolio import Portfolio
from engine.risk import Cause, TradingStateController

__all__ = ["FlattenProgress", "FlattenReport", "Flattener", "ProgressCallback", "SymbolOutcome"]

log = logging.getLogger(__name__)

MAX_RETRIES_PER_SYMBOL = 3
CLOSE_ALL_ATTEMPTS = 3
CLOSE_ALL_BACKOFF_S = 0.1
CLOSE_ALL_BACKOFF_CAP_S = 1.0
ASK_AGAIN_S = 0.05
"""First wait before asking the broker again (doubles up to ``confirm_interval_s``)."""
TRACK_SLICE = 200
"""Close orders registered between two turns of the loop."""


class Flattener:
    def __init__(
        self,
        *,
        broker: Broker,
        execution: ExecutionManager,
        portfolio: Portfolio,
        state: TradingStateController,
        market: MarketHours,
        clock: Clock,
        bus: EventBus,
        deadline_s: float,
        confirm_interval_s: float = 1.0,
        marks: MarkStore | None = None,
    ) -> None:
        self._broker = broker
        self._execution = execution
        self._portfolio = portfolio
        self._state = state
        self._market = market
        self._clock = clock
        self._bus = bus
        self._deadline_s = deadline_s
        self._confirm_interval_s = confirm_interval_s
        self._marks = marks
        self._task: asyncio.Task[FlattenReport] | None = None
        self._listeners: list[ProgressCallback] = []
        self._run_id = ""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def flatten(self, actor: str, progress: ProgressCallback | None = None) -> FlattenReport:
        return await self._start_or_join(actor, progress, None)

    async def interrupted(self) -> FlattenMark | None:
        """The flatten a kill interrupted before this start, if any (see ``flatten_mark``)."""
        return None if self._marks is None else await load_mark(self._marks, self._state.record)

    async def finish_interrupted(self, mark: FlattenMark) -> FlattenReport:
        """Run the flatten ``mark`` records to the end (after a restart): close what is left,
        confirm flat with the broker, then restore the state its REDUCING replaced, unless
        someone changed the state since."""
        return await self._start_or_join(mark.actor, None, mark)

    async def _start_or_join(
        self, actor: str, progress: ProgressCallback | None, inherited: FlattenMark | None
    ) -> FlattenReport:
        if progress is not None:
            self._listeners.append(progress)
        try:
            if self.running:
                assert self._task is not None
                report = await asyncio.shield(self._task)
                return dataclasses.replace(report, joined=True)
            with safety_calls():  # its reads too take the broker's safety lane
                self._task = asyncio.get_running_loop().create_task(self._run(actor, inherited))
            return await asyncio.shield(self._task)
        finally:
            if progress is not None and progress in self._listeners:
                self._listeners.remove(progress)

    async def _emit(self, phase: str, total: int, done: int, started: float) -> None:
        event = FlattenProgress(phase, total, done, self._clock.monotonic() - started)
        for listener in list(self._listeners):
            try:
                await listener(event)
            except Exception:
                log.exception("flatten progress listener failed")

    async def _run(self, actor: str, inherited: FlattenMark | None) -> FlattenReport:
        # Retry ids are deterministic within a run (a resent retry is the same order) and
        # distinct across runs, even when market time stands still (a finished replay).
        self._run_id = uuid4().hex[:8]
        started = self._clock.monotonic()
        started_at = self._clock.now()
        deadline = started + self._deadline_s
        before = {p.symbol: p.qty for p in self._portfolio.positions()}
        notes: list[str] = []
        mark = inherited
        if mark is None:
            active = self._state.state is TradingState.ACTIVE
            mark = FlattenMark(actor, started_at, self._state.record if active else None)
        # The mark goes first: a kill right after the REDUCING must find it at the restart.
        if self._marks is not None:
            await save_mark(self._marks, mark)
        if inherited is None and mark.replaced is not None:
            await self._state.reduce(
                actor, "flatten in progress", cause=Cause.FLATTEN, unless_halted=True
            )
        try:
            with self._execution.expecting_broker_orders("flatten"):
                return await self._flatten(actor, started, started_at, deadline, before, notes)
        finally:
            if mark.replaced is not None:
                # Only undo our own REDUCING: a trader's reduce or halt during the flatten stays.
                why = "flatten finished" if inherited is None else "interrupted flatten finished"
                try:
                    await self._state.resume(mark.actor, why, if_cause=Cause.FLATTEN)
                except TradingStateError as exc:  # the journal cannot write: stay REDUCING
                    log.warning("REDUCING kept after the flatten: %s", exc)
            if self._marks is not None:
                await save_mark(self._marks, None)

    async def _flatten(
        self,
        actor: str,
        started: float,
        started_at: datetime,
        deadline: float,
        before: dict[str, Decimal],
        notes: list[str],
    ) -> FlattenReport:
        total = len(before)
        market_open = self._market.is_open(self._clock.now())
        await self._emit("closing", total, 0, started)
        closes = Closes(before)
        unsubscribe = self._bus.subscribe(FillReceived, closes.on_fill)
        first_view: asyncio.Task[tuple[list[Position], list[BrokerOrder]]] | None = None
        try:
            refused, placed = await self._close_everything(notes)
            if not market_open:
                await self._track(placed)
                return await self._queued_report(actor, started_at, started, before, notes)
            # Ask the broker at once; its close orders are registered while it answers.
            first_view = asyncio.get_running_loop().create_task(self._broker_view())
            await self._track(placed)
            await self._emit("confirming", total, closes.done, started)
            result, open_left = await self._confirm_and_retry(
                before, refused, deadline, started, closes, first_view
            )
        finally:
            unsubscribe()
            if first_view is not None:
                if not first_view.done():
                    first_view.cancel()
                elif not first_view.cancelled():
                    first_view.exception()  # awaited, or dropped by a failure: retrieved
        flat = all(o.status == "closed" for o in result) and open_left == 0
        await self._emit("done", total, sum(o.status == "closed" for o in result), started)
        return FlattenReport(
            actor=actor,
            started_at=started_at,
            flat=flat,
            elapsed_s=self._clock.monotonic() - started,
            outcomes=result,
            open_orders_left=open_left,
            market_open=True,
            notes=notes,
        )

    async def _close_everything(self, notes: list[str]) -> tuple[dict[str, str], list[BrokerOrder]]:
        """Close-all (cancel-all when it failed); returns the symbols refused, with why, and
        the close orders the broker placed (to ``_track``)."""
        refused: dict[str, str] = {}
        placed: list[BrokerOrder] = []
        results = await self._close_all(notes)
        if results is None:
            try:
                await self._broker.cancel_all_orders()
            except BrokerError as cancel_exc:
                notes.append(f"cancel-all failed: {cancel_exc}")
        for result in results or []:
            if result.order is not None:
                placed.append(result.order)
            if not result.ok:
                refused[result.symbol] = result.message or f"status {result.status}"
        return refused, placed

    async def _track(self, placed: list[BrokerOrder]) -> None:
        """Register the close orders (those whose updates beat the answer are known already),
        a slice at a time: the broker's answer to the first check is read meanwhile."""
        for start in range(0, len(placed), TRACK_SLICE):
            if start:
                await asyncio.sleep(0)
            for order in placed[start : start + TRACK_SLICE]:
                self._execution.track_broker_order(order, strategy="flatten")

    async def _close_all(self, notes: list[str]) -> list[CloseResult] | None:
        """Cancel every order and close every position in one call; None when it failed.

        Retried when the broker could not be reached: a close-all that did land holds the
        shares of its close orders, so a repeat answers 403 for those symbols instead of
        selling twice."""
        for attempt in range(1, CLOSE_ALL_ATTEMPTS + 1):
            try:
                return await self._broker.close_all_positions(cancel_orders=True)
            except BrokerUnavailable as exc:
                log.warning("close-all attempt %d failed: %s", attempt, exc)
                if attempt == CLOSE_ALL_ATTEMPTS:
                    notes.append(f"close-all failed: {exc}; retrying symbol by symbol")
                else:
                    await asyncio.sleep(
                        backoff_delay(
                            attempt, base_s=CLOSE_ALL_BACKOFF_S, cap_s=CLOSE_ALL_BACKOFF_CAP_S
                        )
                    )
            except BrokerError as exc:
                log.warning("close-all refused: %s", exc)
                notes.append(f"close-all refused: {exc}; retrying symbol by symbol")
                break
        return None

    async def _confirm_and_retry(
        self,
        before: dict[str, Decimal],
        refused: dict[str, str],
        deadline: float,
        started: float,
        closes: Closes,
        first_view: asyncio.Task[tuple[list[Position], list[BrokerOrder]]],
    ) -> tuple[list[SymbolOutcome], int]:
        attempts: dict[str, int] = {}
        errors: dict[str, str] = dict(refused)
        failures = waits = 0
        view: asyncio.Future[tuple[list[Position], list[BrokerOrder]]] | None = first_view
        while True:
            try:
                if view is not None:
                    asked, view = view, None
                    positions, open_orders = await asked
                else:
                    positions, open_orders = await self._broker_view()
            except BrokerError as exc:
                errors["*"] = str(exc)
                if self._clock.monotonic() >= deadline:
                    return outcomes(before, None, errors), -1
                failures += 1
                pause = backoff_delay(failures, base_s=ASK_AGAIN_S, cap_s=self._wait_cap)
                await asyncio.sleep(min(pause, self._left(deadline)))
                continue
            failures = 0
            leftover = {p.symbol: p.qty for p in positions if p.qty != ZERO}
            closes.confirmed(leftover)
            if not leftover and not open_orders:
                return outcomes(before, leftover, errors), 0
            if self._clock.monotonic() >= deadline:
                return outcomes(before, leftover, errors), len(open_orders)
            pending_symbols = {o.symbol for o in open_orders}
            retried = False
            for symbol, qty in leftover.items():
                if symbol in pending_symbols or attempts.get(symbol, 0) >= MAX_RETRIES_PER_SYMBOL:
                    continue  # a close order is still working, or we have tried enough
                attempts[symbol] = attempts.get(symbol, 0) + 1
                retried = True
                await self._retry_symbol(symbol, qty, attempts[symbol], errors)
            if retried:
                await self._emit("retrying", closes.total, closes.done, started)
            elif not pending_symbols:
                return outcomes(before, leftover, errors), 0
            waits += 1
            pause = backoff_delay(waits, base_s=ASK_AGAIN_S, cap_s=self._wait_cap)
            await self._await_closes(closes, min(pause, self._left(deadline)), started)

    async def _broker_view(self) -> tuple[list[Position], list[BrokerOrder]]:
        positions, orders = await asyncio.gather(
            self._broker.get_positions(), self._broker.get_open_orders()
        )
        return positions, orders

    async def _await_closes(self, closes: Closes, seconds: float, started: float) -> None:
        """Until every symbol has closed on the stream (then the broker is asked again at
        once) or ``seconds`` pass; progress is reported as symbols close."""
        end = self._clock.monotonic() + seconds
        done = closes.done
        while not closes.all_closed and (left := end - self._clock.monotonic()) > 0:
            if not await self._execution.wait_for_change(left):
                return
            if closes.done != done:
                done = closes.done
                await self._emit("closing", closes.total, done, started)

    @property
    def _wait_cap(self) -> float:
        return max(ASK_AGAIN_S, self._confirm_interval_s)

    def _left(self, deadline: float) -> float:
        return max(0.0, deadline - self._clock.monotonic())

    async def _retry_symbol(
        self, symbol: str, qty: Decimal, attempt: int, errors: dict[str, str]
    ) -> None:
        side = Side.SELL if qty > ZERO else Side.BUY
        request = OrderRequest(
            client_order_id=make_client_order_id(
                "flatten", symbol, self._clock.now(), tag=f"{self._run_id}-retry{attempt}"
            ),
            symbol=symbol,
            side=side,
            qty=abs(qty),
            strategy="flatten",
        )
        try:
            result = await self._execution.submit(request, checked=False)
        except BrokerError as exc:
            errors[symbol] = str(exc)
            return
        if result.order is not None and result.order.reason and result.order.status.is_terminal:
            errors[symbol] = result.order.reason

    async def _queued_report(
        self,
        actor: str,
        started_at: datetime,
        started: float,
        before: dict[str, Decimal],
        notes: list[str],
    ) -> FlattenReport:
        next_open = self._market.next_open(self._clock.now())
        try:
            open_orders = await self._broker.get_open_orders()
        except BrokerError as exc:
            notes.append(f"could not list open orders: {exc}")
            open_orders = []
        queued = queued_outcomes(before, {o.symbol for o in open_orders})
        await self._emit("done", len(before), 0, started)
        return FlattenReport(
            actor=actor,
            started_at=started_at,
            flat=not before,
            elapsed_s=self._clock.monotonic() - started,
            outcomes=queued,
            open_orders_left=len(open_orders),
            market_open=False,
            next_open=next_open,
            notes=notes,
            market_note=market_closed_note(next_open),
        )
