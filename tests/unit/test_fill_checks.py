"""Every trade update is checked before anything of it is committed: a bad one is quarantined
(not applied, not lost), raises a critical alert, and a REST recovery asks for the truth."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from engine.broker.port import TradeUpdate
from engine.domain import Fill, OrderStatus, Side
from engine.events import EngineError, FillReceived, Severity
from engine.orders import Order
from tests.support.app import wait_for
from tests.unit.engine_stubs import ExecParts, broker_order, ny, priced_execution, request

D = Decimal
S = OrderStatus


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[ExecParts]:
    async with priced_execution(tmp_path) as p:
        yield p


def ours(p: ExecParts, cid: str = "c1", qty: int = 10, filled: int = 0) -> Order:
    """An order we sent and the broker acknowledged, ``filled`` of it already executed."""
    order = Order.from_request(request(cid, qty=qty), p.clock.now())
    order.status = S.SUBMITTED
    order.broker_order_id = f"b-{cid}"
    p.orders.add(order)
    if filled:
        order.apply_fill(
            Fill(f"{cid}-x0", cid, f"b-{cid}", "AAPL", Side.BUY, D(filled), D(100), ny(11))
        )
    return order


def fill_update(order: Order, **changes: object) -> TradeUpdate:
    """A well-formed partial_fill of 4 @ 100 for ``order``, with ``changes`` applied (fields of
    the update, or ``symbol`` / ``filled_qty`` / ``client_order_id`` / ``broker_order_id`` of
    its order record)."""
    record_changes: dict[str, object] = {"filled_qty": order.filled_qty + D(4)}
    for key in ("symbol", "filled_qty", "client_order_id", "broker_order_id"):
        if key in changes:
            record_changes[key] = changes.pop(key)
    record = broker_order(order, S.PARTIALLY_FILLED, "partial_fill")
    record = dataclasses.replace(record, **record_changes)  # type: ignore[arg-type]
    update = TradeUpdate(
        "partial_fill", record, ny(11), execution_id="poison-1", price=D(100), qty=D(4)
    )
    return dataclasses.replace(update, **changes)  # type: ignore[arg-type]


BAD: dict[str, Callable[[Order], TradeUpdate]] = {
    "negative qty": lambda o: fill_update(o, qty=D(-5)),
    "zero qty": lambda o: fill_update(o, qty=D(0)),
    "missing qty": lambda o: fill_update(o, qty=None),
    "infinite qty": lambda o: fill_update(o, qty=D("Infinity")),
    "zero price": lambda o: fill_update(o, price=D(0)),
    "missing price": lambda o: fill_update(o, price=None),
    "NaN price": lambda o: fill_update(o, price=D("NaN")),
    "negative commission": lambda o: fill_update(o, commission=D("-1")),
    "missing execution id": lambda o: fill_update(o, execution_id=None),
    "symbol never traded": lambda o: fill_update(o, symbol="ZZZZ"),
    "cumulative qty goes backwards": lambda o: fill_update(o, filled_qty=D(2)),
    "unknown order": lambda o: fill_update(
        o, client_order_id="never-sent", broker_order_id="b-never-sent"
    ),
    "client id not the order's": lambda o: fill_update(o, client_order_id="other"),
}
WORDS = {
    "negative qty": "qty must be a positive number",
    "zero qty": "qty must be a positive number",
    "missing qty": "lacks fields",
    "infinite qty": "qty must be a positive number",
    "zero price": "price must be a positive number",
    "missing price": "lacks fields",
    "NaN price": "price must be a positive number",
    "negative commission": "commission must be zero or more",
    "missing execution id": "lacks fields",
    "symbol never traded": "'ZZZZ', a symbol we neither trade nor hold",
    "cumulative qty goes backwards": "cumulative filled qty 2 goes back from the 6",
    "unknown order": "'never-sent', which we do not know",
    "client id not the order's": "does not match order c1",
}


@pytest.mark.parametrize("case", list(BAD))
async def test_trade_update_when_fill_is_bad_then_quarantined_alerted_and_recovery_asked(
    parts: ExecParts, case: str
) -> None:
    order = ours(parts, filled=6)
    cash, qty = parts.portfolio.cash, parts.portfolio.qty("AAPL")
    bad = BAD[case](order)

    await parts.execution.on_trade_update(bad)

    # Not applied: no fill in the journal, the book and the order as they were.
    assert await parts.journal.load_fills() == []
    assert (parts.portfolio.cash, parts.portfolio.qty("AAPL")) == (cash, qty)
    assert (order.filled_qty, order.status) == (D(6), S.PARTIALLY_FILLED)
    assert parts.of(FillReceived) == []
    # Not lost: kept as received, with the reason.
    [kept] = await parts.journal.quarantined()
    assert kept.source == "trade_update"
    assert WORDS[case] in kept.reason
    assert json.loads(kept.payload)["execution_id"] == bad.execution_id
    # Said loudly, and the broker asked for the truth.
    [alert] = parts.of(EngineError)
    assert alert.severity is Severity.CRITICAL
    assert WORDS[case] in alert.message
    await wait_for(lambda: len(parts.broker.fill_queries) == 1)


async def test_trade_update_when_fill_is_good_then_applied_and_nothing_quarantined(
    parts: ExecParts,
) -> None:
    order = ours(parts, filled=6)

    await parts.execution.on_trade_update(fill_update(order))

    assert (order.filled_qty, order.status) == (D(10), S.FILLED)
    assert [f.execution_id for f in await parts.journal.load_fills()] == ["poison-1"]
    assert await parts.journal.quarantined() == []
    assert parts.of(EngineError) == []
    assert parts.broker.fill_queries == []


async def test_trade_update_when_close_all_order_unknown_during_flatten_then_adopted_not_refused(
    parts: ExecParts,
) -> None:
    await parts.execution.submit(request("c1"))
    await parts.pump()
    close = parts.exchange.close_position("AAPL")  # the broker creates it, we never sent it
    with parts.execution.expecting_broker_orders("flatten"):
        await parts.pump()

    assert parts.portfolio.qty("AAPL") == D(0)
    adopted = parts.orders.get(close.client_order_id)
    assert adopted is not None
    assert adopted.strategy == "flatten"
    assert await parts.journal.quarantined() == []


async def test_apply_fill_when_rest_recovery_brings_a_bad_fill_then_quarantined_no_new_recovery(
    parts: ExecParts,
) -> None:
    ours(parts)
    bad = Fill("rest-1", "c1", "b-c1", "AAPL", Side.BUY, D(-3), D(100), ny(11))

    assert await parts.execution.apply_fill(bad, source="broker_rest") is False

    [kept] = await parts.journal.quarantined()
    assert (kept.source, json.loads(kept.payload)["qty"]) == ("broker_rest", "-3")
    assert parts.portfolio.qty("AAPL") == D(0)
    [alert] = parts.of(EngineError)
    assert alert.severity is Severity.CRITICAL
    assert parts.broker.fill_queries == []  # it came from a recovery: no loop


async def test_malformed_update_when_reported_then_quarantined_raw_alerted_and_recovered(
    parts: ExecParts,
) -> None:
    await parts.execution.on_malformed_update(b'{"stream":"trade_updates","data":{"ev', "not JSON")

    [kept] = await parts.journal.quarantined()
    assert kept.reason == "malformed: not JSON"
    assert json.loads(kept.payload) == {"raw": '{"stream":"trade_updates","data":{"ev'}
    [alert] = parts.of(EngineError)
    assert alert.severity is Severity.CRITICAL
    await wait_for(lambda: len(parts.broker.fill_queries) == 1)


async def test_refused_updates_when_many_arrive_during_a_recovery_then_folded_into_one_more(
    parts: ExecParts,
) -> None:
    order = ours(parts)
    parts.broker.fills_gate = asyncio.Event()  # the first recovery is still at the broker
    for i in range(20):
        await parts.execution.on_trade_update(fill_update(order, qty=D(-i - 1)))
    await wait_for(lambda: len(parts.broker.fill_queries) == 1)

    parts.broker.fills_gate.set()
    await wait_for(lambda: len(parts.broker.fill_queries) == 2)
    await parts.execution.close()

    assert len(await parts.journal.quarantined(limit=100)) == 20
    assert len(parts.broker.fill_queries) == 2
