"""The read-only web server, in the bot's own event loop.

``WebServer(app, router=...)`` is a service like the alert router and the scheduler: the bot
(``bot.runner``) and the console start it after the engine and stop it before. It serves the
page, the JSON API over the command service's read calls, server-sent change events and
``/metrics``. No route changes anything:
every method but GET and HEAD is refused with 405 before anything else runs, and every route
but ``/healthz`` needs the bearer token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.alerts import AlertRouter
from bot.web import api, page
from bot.web.auth import TOKEN_FILE, TokenCheck, write_token_file
from bot.web.events import ChangeStream
from bot.web.metrics import CONTENT_TYPE_LATEST, EngineCollector, metrics_registry, render
from engine.app import EngineApp, StartupError
from engine.errors import DomainError

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = frozenset({"/healthz"})
SHUTDOWN_TIMEOUT_S = 2.0

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class WebServer:
    def __init__(self, app: EngineApp, *, router: AlertRouter | None = None) -> None:
        """Build it before the engine starts, so the metrics' order counters see start-up."""
        self._app = app
        self._settings = app.settings.web
        self._collector = EngineCollector(app, router)
        self._registry = metrics_registry(self._collector)
        self._changes = ChangeStream(app.bus)
        self._runner: web.AppRunner | None = None
        self._token: str | None = (
            self._settings.token.get_secret_value().strip() if self._settings.token else None
        )
        self.url = ""
        """``http://host:port/`` once started."""

    @property
    def token_source(self) -> str:
        """Where the operator finds the token (never the token itself)."""
        if self._settings.token is not None:
            return "WEB_TOKEN"
        return str(self._app.settings.storage.data_dir / TOKEN_FILE)

    async def make_app(self) -> web.Application:
        """The aiohttp application (tests serve it with aiohttp's test server)."""
        if self._token is None:
            data_dir = self._app.settings.storage.data_dir
            self._token = await asyncio.to_thread(write_token_file, data_dir)
        check = TokenCheck(self._token)
        assets = await asyncio.to_thread(page.load_assets)

        @web.middleware
        async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
            if request.method not in READ_METHODS:
                response: web.StreamResponse = _refuse_write(request)
            elif request.path not in OPEN_PATHS and not check.allows(request):
                response = _unauthorized(request, assets)
            else:
                response = await _run(request, handler)
            response.headers.update(_COMMON_HEADERS)
            return response

        webapp = web.Application(middlewares=[guard], client_max_size=1024)
        webapp.router.add_get("/healthz", self._healthz)
        webapp.router.add_get("/metrics", self._metrics)
        webapp.router.add_get("/api/events", self._changes.handle)
        for path, handler in api.routes(self._app.commands).items():
            webapp.router.add_get(path, handler)
        for path, handler in page.routes(assets).items():
            webapp.router.add_get(path, handler)
        webapp.on_shutdown.append(self._on_shutdown)
        return webapp

    async def start(self) -> None:
        """Listen on ``WEB_HOST:WEB_PORT``; ``StartupError`` (one line) when that fails."""
        host, port = self._settings.host, self._settings.port
        runner = web.AppRunner(
            await self.make_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(
                f"the web server cannot listen on {host}:{port} ({exc.strerror or exc}): "
                "set WEB_PORT to a free port or WEB_ENABLED=false"
            ) from exc
        self._runner = runner
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        self.url = f"http://{shown}:{bound[1]}/"
        log.info("web page on %s (token: %s)", self.url, self.token_source)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            self._changes.close()
            self._collector.close()

    async def _on_shutdown(self, _: web.Application) -> None:
        self._changes.close()  # open event streams end, so shutdown does not wait for them

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        ready = self._app.engine.ready.is_set()
        return api.json_response({"ok": ready}, 200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        api.query(request)
        body = render(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _run(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except api.BadQuery as exc:
        return api.error_response(400, str(exc))
    except web.HTTPException as exc:
        if exc.status == 405:  # not reached for GET/HEAD; kept for a route without GET
            return _refuse_write(request)
        return api.error_response(exc.status, exc.reason)
    except DomainError as exc:
        return api.error_response(503, str(exc))
    except Exception:
        log.exception("web request %s failed", request.path)
        return api.error_response(500, "internal error; the details are in the log")


def _refuse_write(request: web.Request) -> web.StreamResponse:
    response = api.error_response(405, f"read-only: {request.method} is not allowed here")
    response.headers["Allow"] = "GET, HEAD"
    return response


def _unauthorized(request: web.Request, assets: page.Assets) -> web.StreamResponse:
    if request.path == "/":
        response: web.StreamResponse = page.login(assets)
    else:
        response = api.error_response(401, "missing or wrong token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="trader"'
    return response
