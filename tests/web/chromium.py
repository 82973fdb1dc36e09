"""Headless Chromium (Debian's package) driven over the Chrome DevTools Protocol with the
``websockets`` library: just enough to load a page, read it, and take screenshots.

The flags keep it off the network (this machine has none) and quiet: no background
networking, component updates, sync or first-run work. As root it needs ``--no-sandbox``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-port=0",
)
INSTALL_HINT = "apt-get install chromium (the Debian package); .ci/run does it"


def chromium_path() -> str:
    """The browser, or fail (in CI) / skip (elsewhere) saying how to install it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is not installed, the browser test cannot run: {INSTALL_HINT}")
    pytest.skip(f"Chromium is not installed: {INSTALL_HINT}")


class CdpError(Exception):
    pass


@dataclass
class Tab:
    """One page target, attached with a flat session."""

    browser: Browser
    session: str
    errors: list[str] = field(default_factory=list)
    """Console errors, uncaught exceptions, failed loads and CSP violations, as text."""

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression!r} raised: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, within: float = 10.0) -> Any:
        """Poll a JavaScript expression until it is truthy; returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                value = await self.evaluate(expression)
            except CdpError as exc:
                # A form submit navigates: an evaluation caught in between is asked again.
                if "navigated or closed" not in str(exc):
                    raise
                value = None
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"{expression!r} not true within {within} s")
            await asyncio.sleep(0.05)

    async def navigate(self, url: str) -> None:
        loaded = self.browser.expect("Page.loadEventFired", self.session)
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, 15)

    async def set_viewport(self, width: int, height: int, *, mobile: bool) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=2 if mobile else 1,
            mobile=mobile,
        )
        # A scrollbar would take its width from the layout but not from the screenshot.
        await self.send("Emulation.setScrollbarsHidden", hidden=True)

    async def screenshot(self, path: Path) -> Path:
        reply = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(reply["data"]))
        return path

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            texts = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
            self.errors.append("console: " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())


class Browser:
    def __init__(self, proc: asyncio.subprocess.Process, ws: ClientConnection) -> None:
        self._proc = proc
        self._ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self._tabs: dict[str, Tab] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        reply = asyncio.get_running_loop().create_future()
        self._replies[message["id"]] = reply
        await self._ws.send(json.dumps(message))
        return await asyncio.wait_for(reply, 30)

    def expect(self, method: str, session: str | None) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, session, future))
        return future

    async def new_tab(self) -> Tab:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        tab = Tab(self, attached["sessionId"])
        self._tabs[tab.session] = tab
        for domain in ("Runtime", "Log", "Page", "Network"):
            await tab.send(f"{domain}.enable")
        return tab

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                reply = self._replies.pop(message["id"], None)
                if reply is not None and not reply.done():
                    if "error" in message:
                        reply.set_exception(CdpError(str(message["error"])))
                    else:
                        reply.set_result(message.get("result", {}))
                continue
            method, session = message.get("method", ""), message.get("sessionId")
            params = message.get("params", {})
            tab = self._tabs.get(session or "")
            if tab is not None:
                tab.on_event(method, params)
            for waiter in list(self._waiters):
                if waiter[0] == method and waiter[1] == session and not waiter[2].done():
                    waiter[2].set_result(params)
                    self._waiters.remove(waiter)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._ws.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


@contextlib.asynccontextmanager
async def chromium(workdir: Path) -> AsyncIterator[Browser]:
    """A fresh headless Chromium with its own empty profile under ``workdir``."""
    exe = chromium_path()
    profile = workdir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    flags = [*FLAGS, f"--user-data-dir={profile}"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    with (workdir / "chromium.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            exe, *flags, "about:blank", stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
        )
    try:
        endpoint = await _devtools_endpoint(profile, proc, workdir / "chromium.log")
        ws = await connect(endpoint, max_size=64 * 2**20, open_timeout=15)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    browser = Browser(proc, ws)
    try:
        yield browser
    finally:
        await browser.close()


async def _devtools_endpoint(
    profile: Path, proc: asyncio.subprocess.Process, log: Path, within: float = 30.0
) -> str:
    """Chromium writes its DevTools port and path to ``DevToolsActivePort`` once listening."""
    marker = profile / "DevToolsActivePort"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await asyncio.to_thread(marker.exists):
            lines = (await asyncio.to_thread(marker.read_text)).split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        if proc.returncode is not None:
            tail = (await asyncio.to_thread(log.read_text))[-2000:]
            raise AssertionError(f"Chromium exited ({proc.returncode}): {tail}")
        if loop.time() > deadline:
            raise AssertionError(f"Chromium did not start within {within} s")
        await asyncio.sleep(0.05)
