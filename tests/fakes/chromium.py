"""Headless Chromium (Debian's `chromium`) driven over the Chrome DevTools protocol, for page tests.

Why the DevTools protocol over its websocket and not selenium: one small library (`websockets`)
and ~100 lines here give navigation, `Runtime.evaluate`, console and log events and screenshots;
nothing downloads a browser or a driver (Selenium Manager would try). The browser starts with a
new empty profile and with every background fetch off, so it talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
from websockets.asyncio.client import ClientConnection, connect

from fakes.server import free_port

__all__ = ["FLAGS", "Page", "chromium_page"]

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check", "--disable-dev-shm-usage",
    "--metrics-recording-only", "--password-store=basic", "--window-size=1400,1000",
)  # fmt: skip


class Page:
    """One tab: commands with `call`, and the console errors seen so far in `errors`."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.errors: list[str] = []
        self._replies: dict[int, Any] = {}

    def _event(self, msg: dict[str, Any]) -> None:
        method, p = msg.get("method"), msg.get("params") or {}
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails") or {}
            self.errors.append("exception: " + str((d.get("exception") or {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded" and (p.get("entry") or {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url') or ''}".strip())

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        i = next(self._ids)
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result") or {}
            self._event(msg)

    async def evaluate(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return (r.get("result") or {}).get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def screenshot(self) -> bytes:
        """The whole page (not only the window) as PNG."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        r = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        return base64.b64decode(r["data"])


def _launch(binary: str, profile: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    return port, proc


@contextlib.asynccontextmanager
async def chromium_page(binary: str, profile: Path) -> AsyncIterator[Page]:
    """Start `binary` headless on a free 127.0.0.1 DevTools port with a new profile in `profile`;
    yield its first tab with console, log and runtime events on; stop the browser afterwards."""
    port, proc = _launch(binary, profile)
    try:
        ws_url = None
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            while ws_url is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr and proc.poll() is not None else ""
                    raise RuntimeError(f"chromium did not open its DevTools port: {err[-2000:]}")
                try:
                    pages = [t for t in (await client.get("/json/list")).json() if t.get("type") == "page"]
                    ws_url = pages[0]["webSocketDebuggerUrl"] if pages else None
                except httpx.HTTPError:
                    pass
                if ws_url is None:
                    await anyio.sleep(0.2)
        async with connect(ws_url, max_size=64 * 2**20) as ws:
            page = Page(ws)
            for domain in ("Runtime", "Log", "Page"):
                await page.call(f"{domain}.enable")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
