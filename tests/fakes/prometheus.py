"""A fake Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`) over real HTTP.

`series[query]` is what an instant query returns: a number (one series), a list of label dicts
with values (several series), None (no series), or a callable `f(t: float)` of the evaluation
time. `down = True` answers 503 (`failing`: only for those queries), `garbage = True` answers 200 with HTML, `delay` sleeps before
answering (for timeouts), `bad[query] = "msg"` answers 400 bad_data. Auth is checked when
`bearer` or `basic` is set. `queries` logs (query, time).
"""

from __future__ import annotations

import base64
import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fakes.server import serve_in_thread

__all__ = ["FakePrometheus"]


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class FakePrometheus:
    def __init__(self, bearer: str | None = None, basic: tuple[str, str] | None = None) -> None:
        self.series: dict[str, Any] = {}
        self.bad: dict[str, str] = {}
        self.down = False
        self.failing: set[str] = set()
        self.garbage = False
        self.delay = 0.0
        self.bearer, self.basic = bearer, basic
        self.queries: list[tuple[str, float]] = []
        self.app = Starlette(routes=[
            Route("/api/v1/query", self._query, methods=["GET", "POST"]),
            Route("/api/v1/query_range", self._range, methods=["GET", "POST"]),
        ])  # fmt: skip

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        with serve_in_thread(self.app) as url:
            yield url

    def _check(self, request: Request) -> Response | None:
        if self.delay:
            time.sleep(self.delay)  # a slow server (the fake runs in its own thread)
        if self.down or request.query_params.get("query") in self.failing:
            return PlainTextResponse("service unavailable", 503)
        if self.garbage:
            return Response("<html>502 from a proxy</html>", 200, media_type="text/html")
        auth = request.headers.get("authorization")
        if self.bearer is not None and auth != f"Bearer {self.bearer}":
            return JSONResponse({"status": "error", "errorType": "unauthorized", "error": "unauthorized"}, 401)
        if self.basic is not None:
            want = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if auth != want:
                return JSONResponse({"status": "error", "errorType": "unauthorized", "error": "unauthorized"}, 401)
        return None

    def _value(self, query: str, t: float) -> Any:
        v = self.series.get(query)
        return v(t) if callable(v) else v

    async def _query(self, request: Request) -> Response:
        if (err := self._check(request)) is not None:
            return err
        q = request.query_params.get("query", "")
        t = float(request.query_params.get("time", time.time()))
        self.queries.append((q, t))
        if q in self.bad:
            return JSONResponse({"status": "error", "errorType": "bad_data", "error": self.bad[q]}, 400)
        v = self._value(q, t)
        if v is None:
            result: list[Any] = []
        elif isinstance(v, list):
            result = [{"metric": labels, "value": [t, _num(val)]} for labels, val in v]
        else:
            result = [{"metric": {}, "value": [t, _num(v)]}]
        return JSONResponse({"status": "success", "data": {"resultType": "vector", "result": result}})

    async def _range(self, request: Request) -> Response:
        if (err := self._check(request)) is not None:
            return err
        p = request.query_params
        q, start, end, step = p["query"], float(p["start"]), float(p["end"]), float(p["step"])
        values, t = [], start
        while t <= end:
            v = self._value(q, t)
            if v is not None:
                values.append([t, _num(v)])
            t += step
        result = [{"metric": {}, "values": values}] if values else []
        return JSONResponse({"status": "success", "data": {"resultType": "matrix", "result": result}})
