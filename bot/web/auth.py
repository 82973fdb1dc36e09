"""The bearer token: every route but ``/healthz`` needs it.

A program sends ``Authorization: Bearer <token>``. A browser cannot add that header to a page
load, so the login page stores the token in a same-site cookie that the page's own requests
then carry; either is compared with the token in constant time (both sides hashed first, so
not even the length leaks).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

log = logging.getLogger(__name__)

COOKIE = "trader_web_token"
TOKEN_FILE = "web-token"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class TokenCheck:
    def __init__(self, token: str) -> None:
        self._digest = _digest(token)

    def allows(self, request: web.Request) -> bool:
        """True when the request carries the token in its bearer header or its cookie."""
        given: list[str] = []
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            given.append(credentials.strip())
        cookie = request.cookies.get(COOKIE)
        if cookie:
            given.append(unquote(cookie))
        # Every candidate is compared, so the time taken does not say which one matched.
        matches = [hmac.compare_digest(_digest(g), self._digest) for g in given]
        return any(matches)


def write_token_file(data_dir: Path) -> str:
    """A new random token for this run, written (owner-only) to ``web-token`` in the data
    dir; used when ``WEB_TOKEN`` is not set on a loopback bind. Runs in a worker thread."""
    token = secrets.token_urlsafe(32)
    path = data_dir / TOKEN_FILE
    temp = path.with_name(f".{TOKEN_FILE}.tmp")
    temp.unlink(missing_ok=True)  # a leftover could have looser permissions
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    os.replace(temp, path)
    return token
