"""The JSON API against a real engine on the simulator, through aiohttp's test client."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.app import EngineApp
from tests.support.app import REPLAY_DAY, seed_position
from tests.web.conftest import AUTH, Client
from tests.web.helpers import eventually, rest_limit_buy

ROUTES = [
    "/api/status",
    "/api/positions",
    "/api/orders",
    "/api/pnl",
    "/api/trades",
    "/api/equity",
    "/api/audit",
]


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def test_status_when_token_given_then_state_money_as_strings_and_times_in_utc(
    client: Client, sim_app: EngineApp
) -> None:
    response = await client.get("/api/status", headers=AUTH)

    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    record = sim_app.engine.state.record
    assert body["state"] == "ACTIVE"
    assert body["state_actor"] == record.actor
    assert body["state_reason"] == record.reason
    assert utc(body["state_since"]) == record.ts.astimezone(UTC)
    assert utc(body["now"]).tzinfo == UTC
    assert isinstance(body["equity"], str)
    assert Decimal(body["equity"]) == sim_app.engine.portfolio.summary().equity
    assert body["mode"] == "sim"
    assert body["positions"] == len(sim_app.engine.portfolio.positions())
    assert body["feed"]["finished"] is True
    assert body["broker"]["name"] == "sim"


async def test_positions_when_sim_holds_positions_then_each_listed_with_decimal_strings(
    client: Client, sim_app: EngineApp
) -> None:
    await seed_position(sim_app, "MSFT", -7)

    body = await (await client.get("/api/positions", headers=AUTH)).json()

    by_symbol = {p["symbol"]: p for p in body}
    assert set(by_symbol) == {p.symbol for p in sim_app.engine.portfolio.positions()}
    assert by_symbol["MSFT"]["qty"] == "-7"
    held = next(p for p in sim_app.engine.portfolio.positions() if p.symbol == "MSFT")
    assert Decimal(by_symbol["MSFT"]["avg_price"]) == held.avg_price
    assert Decimal(by_symbol["MSFT"]["market_value"]) == held.market_value


async def test_orders_when_limit_order_rests_then_listed_with_iso_creation_time(
    client: Client, sim_app: EngineApp
) -> None:
    order_id = await rest_limit_buy(sim_app, "AAPL", 3, "1.00")

    body = await (await client.get("/api/orders", headers=AUTH)).json()

    (order,) = [o for o in body if o["client_order_id"] == order_id]
    assert order["symbol"] == "AAPL"
    assert order["side"] == "buy"
    assert order["qty"] == "3"
    assert order["limit_price"] == "1.00"
    assert order["order_type"] == "limit"
    assert utc(order["created_at"]) <= sim_app.clock.now()


async def test_pnl_when_the_morning_traded_then_summary_and_curve_ending_now(
    client: Client, sim_app: EngineApp
) -> None:
    body = await (await client.get("/api/pnl", headers=AUTH)).json()

    summary = sim_app.engine.portfolio.summary()
    assert Decimal(body["summary"]["equity"]) == summary.equity
    assert Decimal(body["summary"]["realized"]) == summary.realized
    curve = body["curve"]
    assert curve, "the curve ends with the current equity at least"
    assert Decimal(curve[-1]["equity"]) == summary.equity
    times = [utc(point["ts"]) for point in curve]
    assert times == sorted(times)


async def test_read_when_served_then_no_audit_row(client: Client, sim_app: EngineApp) -> None:
    for path in ROUTES:
        assert (await client.get(path, headers=AUTH)).status == 200
    await sim_app.commands.status("tester")  # audited behind its reply, after the web reads

    async def tester_audited() -> bool:
        return any(r.actor == "tester" for r in await sim_app.journal.audit_rows(50))

    await eventually(tester_audited)
    assert [r.command for r in await sim_app.journal.audit_rows(50) if r.actor == "web"] == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/status?verbose=1", "unknown query parameter 'verbose'"),
        ("/api/positions?x=", "unknown query parameter 'x'"),
        ("/metrics?format=json", "unknown query parameter 'format'"),
        ("/api/trades?day=2026-13-01", "day must be a date as YYYY-MM-DD"),
        ("/api/trades?day=20261120", "day must be a date as YYYY-MM-DD"),
        ("/api/trades?days=1", "unknown query parameter 'days'; /api/trades takes day"),
        ("/api/trades?day=2026-11-20&day=2026-11-19", "day is given more than once"),
        ("/api/equity?days=0", "days must be a whole number from 1 to 366"),
        ("/api/equity?days=-1", "days must be a whole number from 1 to 366"),
        ("/api/equity?days=1.5", "days must be a whole number from 1 to 366"),
        ("/api/audit?limit=501", "limit must be a whole number from 1 to 500"),
        ("/api/audit?limit=", "limit must be a whole number from 1 to 500"),
        ("/api/audit?limit=1&limit=2", "limit is given more than once"),
        ("/?refresh=1", "takes no parameters"),
    ],
)
async def test_read_when_query_parameter_unknown_then_400_naming_it_and_nothing_run(
    client: Client, sim_app: EngineApp, path: str, message: str
) -> None:
    before = len(await sim_app.journal.audit_rows(500))

    response = await client.get(path, headers=AUTH)

    assert response.status == 400
    assert message in (await response.json())["error"]
    assert len(await sim_app.journal.audit_rows(500)) == before


async def test_unknown_path_when_token_given_then_404_as_json(client: Client) -> None:
    response = await client.get("/api/nothing", headers=AUTH)

    assert response.status == 404
    assert "error" in await response.json()


async def test_healthz_when_no_token_then_ok_and_nothing_else(client: Client) -> None:
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"ok": True}


async def test_trades_when_the_morning_traded_then_todays_fills_newest_first(
    client: Client, sim_app: EngineApp
) -> None:
    await seed_position(sim_app, "MSFT", -2)

    body = await (await client.get("/api/trades", headers=AUTH)).json()

    fills = [f for f in await sim_app.journal.load_fills() if f.ts.date() == REPLAY_DAY]
    assert len(body) == len(fills) > 1
    assert [utc(t["ts"]) for t in body] == sorted((f.ts for f in fills), reverse=True)
    newest = body[0]
    assert (newest["symbol"], newest["side"], newest["qty"]) == ("MSFT", "sell", "2")
    assert Decimal(newest["price"]) == fills[-1].price
    assert isinstance(newest["realized_pnl"], str)


async def test_trades_when_day_given_then_that_trading_day_only(
    client: Client, sim_app: EngineApp
) -> None:
    same = await (await client.get(f"/api/trades?day={REPLAY_DAY}", headers=AUTH)).json()
    other = await (await client.get("/api/trades?day=2020-01-02", headers=AUTH)).json()

    assert same == await (await client.get("/api/trades", headers=AUTH)).json()
    assert other == []


async def test_equity_when_days_given_then_snapshots_oldest_first_as_strings(
    client: Client, sim_app: EngineApp
) -> None:
    body = await (await client.get("/api/equity?days=30", headers=AUTH)).json()

    times = [utc(p["ts"]) for p in body]
    assert times == sorted(times)
    assert all(isinstance(p["equity"], str) for p in body)
    today = await (await client.get("/api/equity", headers=AUTH)).json()
    assert len(today) <= len(body)


async def test_audit_when_limit_given_then_newest_rows_first_at_most_limit(
    client: Client, sim_app: EngineApp
) -> None:
    await sim_app.commands.status("tester")
    await sim_app.commands.orders("tester")

    body = await (await client.get("/api/audit?limit=2", headers=AUTH)).json()

    assert [(a["actor"], a["command"], a["ok"]) for a in body] == [
        ("tester", "orders", True),
        ("tester", "status", True),
    ]
    assert utc(body[0]["ts"]) >= utc(body[1]["ts"])
