"""What the adapter sends and how it reads Alpaca's replies, against the fake: decimal strings
in order bodies, cancel-all's 207 counted by item status, 429s without Retry-After."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
import requests
from alpaca.common.exceptions import APIError

from engine.broker.alpaca.rest import api_error
from engine.domain import OrderRequest, OrderType, Side
from engine.errors import (
    BrokerError,
    BrokerRejected,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderNotFound,
    RateLimited,
)
from tests.alpaca.conftest import BrokerMaker
from tests.fakes.alpaca import FakeAlpaca


def limit(cid: str, symbol: str, qty: str, price: str) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=Side.BUY,
        qty=Decimal(qty),
        order_type=OrderType.LIMIT,
        limit_price=Decimal(price),
    )


async def test_submit_when_fractional_limit_then_body_has_decimal_strings(
    make_broker: BrokerMaker,
) -> None:
    async with FakeAlpaca(always_open=True) as fake, make_broker(fake) as (broker, _):
        placed = await broker.submit_order(limit("strings-1", "MSFT", "2.50", "412.370"))

    body = fake.order_bodies[-1]
    assert (body["qty"], body["limit_price"]) == ("2.5", "412.37")
    assert (body["type"], body["side"], body["time_in_force"]) == ("limit", "buy", "day")
    assert (placed.qty, placed.limit_price) == (Decimal("2.5"), Decimal("412.37"))


async def test_cancel_all_when_some_refused_then_true_count_and_open_orders_rechecked(
    make_broker: BrokerMaker,
) -> None:
    async with FakeAlpaca(always_open=True) as fake, make_broker(fake) as (broker, _):
        for n, symbol in enumerate(("AAPL", "AAPL", "MSFT")):
            await broker.submit_order(limit(f"rest-{n}", symbol, "1", "1"))
        fake.knobs.refuse_cancel = {"MSFT"}
        before = len(fake.requests)
        cancelled = await broker.cancel_all_orders()
        after = fake.requests[before:]
        left = await broker.get_open_orders()

    assert cancelled == 2
    assert after == [("DELETE", "/v2/orders"), ("GET", "/v2/orders")]
    assert [o.client_order_id for o in left] == ["rest-2"]


async def test_rest_when_429_without_retry_after_then_waits_for_the_rate_limit_reset(
    make_broker: BrokerMaker,
) -> None:
    loop = asyncio.get_running_loop()
    async with FakeAlpaca() as fake, make_broker(fake) as (broker, _):
        fake.knobs.send_retry_after = False  # as Alpaca: only X-RateLimit-* headers
        fake.knobs.retry_after_s = 3
        fake.knobs.rate_limit_next = 1
        started = loop.time()
        account = await broker.get_account()
        elapsed = loop.time() - started

    assert account.cash == Decimal(100_000)
    assert fake.requests.count(("GET", "/v2/account")) == 2
    assert elapsed >= 2.0  # the reset is a whole second 3 s ahead: never retried before


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"X-RateLimit-Reset": "+20"}, 20.0),
        ({"Retry-After": "2", "X-RateLimit-Reset": "+20"}, 2.0),
        ({"X-RateLimit-Reset": "soon"}, None),
        ({}, None),
    ],
)
def test_api_error_when_429_then_wait_from_retry_after_else_reset(
    headers: dict[str, str], expected: float | None
) -> None:
    now = int(time.time())  # "+N": N seconds from now, as the Unix second Alpaca sends
    response = requests.Response()
    response.status_code = 429
    for name, value in headers.items():
        response.headers[name] = str(now + int(value)) if value.startswith("+") else value
    response._content = b'{"code":42910000,"message":"rate limit exceeded"}'
    error = api_error(APIError(response.text, requests.HTTPError(response=response)), "account")

    assert isinstance(error, RateLimited)
    if expected is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(expected, abs=1.5)


@pytest.mark.parametrize(
    ("status", "body", "expected", "words"),
    [
        (404, '{"code":40410000,"message":"order not found"}', OrderNotFound, "not found"),
        (422, '{"code":42210000,"message":"order is not cancelable"}', BrokerRejected, "cancel"),
        (
            422,
            '{"code":40010001,"message":"client_order_id must be unique"}',
            DuplicateClientOrderId,
            "unique",
        ),
        (401, '{"code":40110000,"message":"request is not authorized"}', BrokerRejected, "keys"),
        (403, '{"code":40310000,"message":"insufficient buying power"}', BrokerRejected, "buying"),
        (500, '{"code":50010000,"message":"internal server error"}', BrokerUnavailable, "500"),
    ],
)
def test_api_error_when_alpaca_refuses_then_matching_broker_error(
    status: int, body: str, expected: type[BrokerError], words: str
) -> None:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    error = api_error(APIError(body, requests.HTTPError(response=response)), "order")

    assert type(error) is expected
    assert words in str(error)
