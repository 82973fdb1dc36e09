"""Who may read, and that nothing can be written: the token on every route but /healthz,
405 for every method that could change something."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.app import EngineApp
from tests.support.app import seed_position
from tests.web.conftest import AUTH, TOKEN, Client

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")

WRONG: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-token-0123456789"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Cookie": "trader_web_token=wrong-token-0123456789"},
    {"Cookie": f"other_cookie={TOKEN}"},
]


def served_paths(client: Client) -> list[str]:
    """Every path the server answers, read from its own router: a new route is covered."""
    paths = {
        route.resource.canonical
        for route in client.app.router.routes()
        if route.resource is not None
    }
    assert {"/", "/healthz", "/metrics", "/api/status", "/api/events"} <= paths
    return sorted(paths)


async def test_every_route_when_token_missing_or_wrong_then_401_and_no_data(
    client: Client, sim_app: EngineApp
) -> None:
    await seed_position(sim_app, "MSFT", 4)
    equity = str(sim_app.engine.portfolio.summary().equity)
    data = ("MSFT", equity, str(Decimal(equity).quantize(Decimal("0.01"))))

    for headers in WRONG:
        for path in served_paths(client):
            if path == "/healthz":
                continue
            response = await client.get(path, headers=headers)
            body = await response.text()
            where = (headers, path)

            assert response.status == 401, where
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
            assert not [d for d in data if d in body], where
            if path != "/":
                assert await response.json() == {"error": "missing or wrong token"}, where


async def test_page_when_no_token_then_login_form_without_data(client: Client) -> None:
    response = await client.get("/")

    assert response.status == 401
    body = await response.text()
    assert '<form id="login"' in body
    assert 'id="positions"' not in body
    assert "nonce-" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(AUTH, id="bearer"),
        pytest.param({"Authorization": f"bearer   {TOKEN}  "}, id="bearer-lowercase-spaces"),
        pytest.param({"Cookie": f"trader_web_token={TOKEN}"}, id="cookie"),
    ],
)
async def test_every_route_when_token_right_then_served(
    client: Client, headers: dict[str, str]
) -> None:
    for path in served_paths(client):
        if path == "/api/events":
            continue  # a stream that stays open: test_events covers it
        response = await client.get(path, headers=headers)

        assert response.status == 200, path
        assert response.headers["Cache-Control"] == "no-store", path


@pytest.mark.parametrize("headers", [AUTH, {}], ids=["with-token", "without-token"])
async def test_every_route_when_write_method_then_405_and_nothing_changes(
    client: Client, sim_app: EngineApp, headers: dict[str, str]
) -> None:
    before = (
        sim_app.engine.state.record,
        len(sim_app.engine.orders.open_orders()),
        sim_app.engine.portfolio.positions(),
        len(await sim_app.journal.audit_rows(500)),
    )

    for method in WRITE_METHODS:
        for path in [*served_paths(client), "/api/halt", "/api/flatten", "/nowhere"]:
            response = await client.request(method, path, headers=headers, data=b"{}")

            assert response.status == 405, (method, path)
            assert response.headers["Allow"] == "GET, HEAD", (method, path)
            assert "read-only" in (await response.json())["error"]

    after = (
        sim_app.engine.state.record,
        len(sim_app.engine.orders.open_orders()),
        sim_app.engine.portfolio.positions(),
        len(await sim_app.journal.audit_rows(500)),
    )
    assert after == before


async def test_head_when_token_given_then_headers_without_body(client: Client) -> None:
    response = await client.head("/api/status", headers=AUTH)

    assert response.status == 200
    assert await response.read() == b""
