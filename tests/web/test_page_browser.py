"""The page in a real headless Chromium against a running simulator session: it logs in with
the token, shows the state and the positions, updates by itself after a fill, reads on a
phone and on a desktop, and logs no console error. The screenshots are saved to
``build/web-screenshots/`` in the repository (git-ignored; each run replaces them)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.web import WebServer
from engine.app import EngineApp
from tests.support.app import seed_position
from tests.web.chromium import Tab, chromium
from tests.web.conftest import TOKEN, start_with_web, web_settings

SHOTS = Path(__file__).resolve().parents[2] / "build" / "web-screenshots"
PHONE = (390, 844)
COUNT_ROWS = "document.querySelectorAll('#{table} tr[data-key]').length"
DESKTOP = (1280, 900)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[EngineApp, WebServer]]:
    app, server = await start_with_web(web_settings(tmp_path))
    await server.start()
    try:
        yield app, server
    finally:
        await server.stop()
        await app.stop()


def rows_js(table: str) -> str:
    return (
        f"[...document.querySelectorAll('#{table} tr[data-key]')]"
        ".map(tr => [tr.dataset.key, tr.querySelector('.qty')?.textContent ?? ''])"
    )


LOGIN_REFUSED = "That token was not accepted."
# Chromium hands a ``document.cookie`` write to its cookie store asynchronously, so a request
# sent right after it can go out without the cookie. This makes that window 400 ms wide.
LATE_COOKIE_JS = """
const real = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
Object.defineProperty(document, "cookie", {
  configurable: true,
  get() { return real.get.call(document); },
  set(value) { setTimeout(() => real.set.call(document, value), 400); },
});
"""


async def submit_token(tab: Tab, url: str, token: str) -> None:
    await tab.navigate(url)
    assert await tab.evaluate("document.getElementById('login') !== null")
    assert await tab.evaluate("document.getElementById('positions') === null")
    await tab.evaluate(
        f"document.getElementById('token').value = {json.dumps(token)};"
        "document.getElementById('login').requestSubmit(); true"
    )


async def log_in(tab: Tab, url: str) -> None:
    await submit_token(tab, url, TOKEN)
    await tab.wait_for("document.getElementById('positions') !== null")


REFUSED_LOAD = "log: Failed to load resource: the server responded with a status of 401 "


def only_refusals(errors: list[str], url: str) -> bool:
    """The login page itself is the 401 answer, and so is its token check before the cookie
    arrives: Chromium may log those statuses, nothing else."""
    refused = {f"{REFUSED_LOAD}(Unauthorized) {u}" for u in (url, url + "api/status")}
    return all(e in refused for e in errors)


async def test_page_when_session_runs_then_shows_state_positions_and_updates_after_a_fill(
    served: tuple[EngineApp, WebServer], tmp_path: Path
) -> None:
    app, server = served
    await app.commands.status("tester")
    async with chromium(tmp_path) as browser:
        tab = await browser.new_tab()
        await tab.set_viewport(*DESKTOP, mobile=False)
        await log_in(tab, server.url)
        errors_at_login = list(tab.errors)
        tab.errors.clear()

        await tab.wait_for("document.getElementById('live').textContent === 'live'")
        # The first fetch, then the one the stream's hello asks for (missed while away).
        await tab.wait_for("Number(document.body.dataset.renders) >= 2")
        state = await tab.evaluate("document.getElementById('state').textContent")
        detail = await tab.evaluate("document.getElementById('state-detail').textContent")
        shown = dict(await tab.evaluate(rows_js("positions")))
        trades_shown = await tab.evaluate(COUNT_ROWS.format(table="trades"))
        audit_who = await tab.evaluate(
            "[...document.querySelectorAll('#audit tr[data-key] td:nth-child(2)')]"
            ".map(td => td.textContent)"
        )
        curve_drawn = await tab.evaluate("document.querySelector('#curve path.line') !== null")
        held = {p.symbol: str(p.qty) for p in app.engine.portfolio.positions()}
        assert held, "the replayed morning leaves positions to show"
        SHOTS.mkdir(parents=True, exist_ok=True)
        desktop = await tab.screenshot(SHOTS / "page-desktop.png")

        await tab.evaluate("window.sameDocument = true")
        await seed_position(app, "MSFT", -6)  # a fill: the event stream makes the page fetch
        after = await tab.wait_for(f"({rows_js('positions')}).find(r => r[0] === 'MSFT')")
        trades_after = await tab.wait_for(
            f"{COUNT_ROWS.format(table='trades')} > {trades_shown} && "
            + COUNT_ROWS.format(table="trades")
        )
        not_reloaded = await tab.evaluate("window.sameDocument === true")

        await tab.set_viewport(*PHONE, mobile=True)
        await tab.wait_for("innerWidth === 390")
        overflow = await tab.evaluate("document.documentElement.scrollWidth - innerWidth")
        phone = await tab.screenshot(SHOTS / "page-phone.png")
        errors = list(tab.errors)

    print(f"screenshots: {desktop} {phone}")
    assert state == app.engine.state.record.state.value == "ACTIVE"
    assert detail.startswith(f"by {app.engine.state.record.actor}")
    assert shown == held
    today = await app.commands.trades("tester")
    assert trades_shown == len(today) - 1 > 0  # MSFT's fill came later
    assert trades_after == len(today)
    assert curve_drawn
    assert "tester" in audit_who  # a command someone ran is listed
    assert "web" not in audit_who  # the page's own reads are not
    assert after == ["MSFT", "-6"]
    assert not_reloaded
    assert overflow <= 0, "the phone layout scrolls sideways"
    assert errors == [], errors
    assert only_refusals(errors_at_login, server.url), errors_at_login
    for shot in (desktop, phone):
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_login_when_the_cookie_reaches_the_store_late_then_the_page_still_opens(
    served: tuple[EngineApp, WebServer], tmp_path: Path
) -> None:
    _, server = served
    async with chromium(tmp_path) as browser:
        tab = await browser.new_tab()
        await tab.send("Page.addScriptToEvaluateOnNewDocument", source=LATE_COOKIE_JS)
        await log_in(tab, server.url)  # the page opened, not the form again
        errors = list(tab.errors)
    assert only_refusals(errors, server.url), errors


async def test_login_when_the_token_is_wrong_then_the_form_says_so_and_shows_no_data(
    served: tuple[EngineApp, WebServer], tmp_path: Path
) -> None:
    _, server = served
    async with chromium(tmp_path) as browser:
        tab = await browser.new_tab()
        await submit_token(tab, server.url, "not-the-token")
        said = await tab.wait_for(
            f"document.getElementById('wrong').textContent === {json.dumps(LOGIN_REFUSED)}"
        )
        on_form = await tab.evaluate("document.getElementById('login') !== null")
        data_shown = await tab.evaluate("document.getElementById('positions') !== null")
        errors = list(tab.errors)
    assert said
    assert on_form
    assert not data_shown
    assert errors, "the refused check is a 401 that Chromium logs"
    assert only_refusals(errors, server.url), errors
