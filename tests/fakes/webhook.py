"""A webhook receiver over real HTTP on 127.0.0.1 (a stand-in for Slack's incoming webhooks).

It records every request (path, headers, JSON body) and answers from a script: `fail_next(503)`,
`fail_next(429, retry_after=7)`, or the default 200 `ok`. `serve(port)` runs it in a thread with
uvicorn; serving again on the same port after the context ends simulates an outage and recovery.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fakes.server import serve_in_thread

__all__ = ["FakeWebhook", "Received"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class FakeWebhook:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: list[tuple[int, dict[str, str], str]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None, body: str = "error") -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        with self._lock:
            self._script.extend([(status, headers, body)] * times)

    @property
    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received]

    async def _handle(self, request: Request) -> PlainTextResponse:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            status, headers, text = self._script.pop(0) if self._script else (200, {}, "ok")
            if status < 300:  # only what the receiver accepted counts as delivered
                self.received.append(Received("/" + request.path_params["path"], dict(request.headers), body))
        return PlainTextResponse(text, status_code=status, headers=headers)

    @contextlib.contextmanager
    def serve(self, port: int = 0) -> Iterator[str]:
        """Yield the base URL while serving."""
        with serve_in_thread(self.app, port) as url:
            yield url
