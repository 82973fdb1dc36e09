"""The page: one HTML file, its script and its style sheet, all served by the bot (no CDN,
no external font: the VPS may have no outbound access), and the login page that a browser
without the token gets instead."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bot.web.api import query

STATIC = Path(__file__).with_name("static")

# The page runs only its own script and style sheet, and talks only to this server.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_NONCE = "__NONCE__"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Assets:
    index: bytes
    script: bytes
    style: bytes
    login: str
    """The login page, with ``__NONCE__`` where its inline script's nonce goes."""


def load_assets() -> Assets:
    """Read the page's files (in a worker thread: disk I/O)."""
    return Assets(
        index=(STATIC / "index.html").read_bytes(),
        script=(STATIC / "page.js").read_bytes(),
        style=(STATIC / "page.css").read_bytes(),
        login=(STATIC / "login.html").read_text(encoding="utf-8"),
    )


def _serve(body: bytes, content_type: str, csp: str | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        query(request)
        response = web.Response(body=body, content_type=content_type, charset="utf-8")
        if csp:
            response.headers["Content-Security-Policy"] = csp
        return response

    return handler


def routes(assets: Assets) -> dict[str, Handler]:
    return {
        "/": _serve(assets.index, "text/html", PAGE_CSP),
        "/static/page.js": _serve(assets.script, "text/javascript"),
        "/static/page.css": _serve(assets.style, "text/css"),
    }


def login(assets: Assets) -> web.Response:
    """The 401 answer to a browser asking for the page without the token: a form that keeps
    the token in a same-site cookie, checks it against ``/api/status`` and reloads. It shows
    no data."""
    nonce = secrets.token_urlsafe(16)
    response = web.Response(
        text=assets.login.replace(_NONCE, nonce),
        status=401,
        content_type="text/html",
        charset="utf-8",
    )
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return response
