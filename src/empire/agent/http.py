"""The agent's small HTTP API: `/metrics`, `/healthz`, `/readyz`, `/status`, plus routes of other areas.

`build_app(context, extra_routes)` returns a Starlette app; areas contribute routes (the tiering
ingest endpoint, `/alerts`) and `/status` sections (`context.status_sections`). Health semantics:

* `/healthz` (liveness): 200 while the loop is ticking; 503 once no tick has finished for
  max(3 intervals, 60 s): a wedged loop should be restarted by Kubernetes.
* `/readyz` (readiness): 200 once the loop has started and finished a first tick (standby
  replicas are ready too: leadership is not readiness), 503 before. An area that failed to start
  is named in `"degraded"` (the daemon runs without it; see `empire.agent.areas`). 503 also while
  any of `context.readiness` names a problem (the state database down), with each problem in the body.
* `/status`: JSON, leader flag, policy version, last decision per target with its reasons.
* `/v1/...`: the versioned API (`empire.agent.api`): the core's endpoints (`/v1/whoami`,
  `/v1/status`, `/v1/decisions/{target}`, `/v1/audit`), the areas' (`ApiRoute`s among their
  routes) and `/v1/openapi.json`, written from them. With a `Gate` in the context every request
  but the probes is authenticated, rate-limited per caller and, if it writes, audited
  (`api.guard`); `/metrics` and `/status` need a read token when the gate protects them.

Request bodies above `max_body_bytes` are refused with 413 before a handler reads them. `serve()`
runs uvicorn inside our task group without its signal handlers (the daemon owns SIGTERM so that
the in-flight action is finished and journaled before exit), with the connection limits of
`httpconn` (header, body and keep-alive timeouts, a connection cap), and without a logging
config of its own: its loggers propagate to the root handler, where repeated lines are limited.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from empire.agent.api.core import core_endpoints, openapi_route
from empire.agent.api.guard import Gate, Guard
from empire.agent.api.spec import api_routes
from empire.agent.httpconn import ConnectionLimits, accept, effective_max_connections, protocol_class
from empire.agent.monitor import Monitor
from empire.agent.tls import TlsFiles
from empire.errors import ConfigError

if TYPE_CHECKING:
    from empire.agent.loop import ControlLoop

__all__ = ["Admission", "AppContext", "BodyLimit", "ConnectionLimits", "bind", "build_app", "serve"]

logger = logging.getLogger(__name__)


@dataclass
class AppContext:
    monitor: Monitor
    loop: ControlLoop | None = None
    info: dict[str, Any] = field(default_factory=dict)  # metric source, cluster, ... (no secrets)
    status_sections: dict[str, Callable[[], Any]] = field(default_factory=dict)
    readiness: dict[str, Callable[[], str | None]] = field(default_factory=dict)  # name -> problem or None
    max_body_bytes: int = 1_048_576
    max_active_requests: int = 4  # requests handled at once (`Admission`)
    started_wall: float = field(default_factory=time.monotonic)
    degraded: Callable[[], list[str]] = lambda: []  # areas that failed to start ("pools: <error>")
    store: Any = None  # StateStore: the /v1 decisions and audit endpoints read it
    gate: Gate | None = None  # authentication, rate limits, audit (None: every /v1 route but the document is 401)

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.loop.snapshot()) if self.loop is not None else {}
        body.update(self.info)
        for name, section in self.status_sections.items():
            try:
                body[name] = section()
            except Exception as exc:
                body[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return body


class BodyLimit:
    """Refuse request bodies larger than `limit` bytes (declared or streamed) with 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:  # bytes: ASCII digits only
            await JSONResponse({"error": f"body larger than {self.limit} bytes"}, 413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await JSONResponse({"error": f"body larger than {self.limit} bytes"}, 413)(scope, receive, send)


class _TooLarge(Exception):
    pass


class Admission:
    """At most `limit` requests handled at once; the others wait their turn (FIFO), and one that
    waits `wait` seconds is answered 503 with Retry-After. The probes skip the line.

    Why: the API shares the event loop with the control loop. Every request in progress puts its
    callbacks on the loop's ready queue, and each await of a tick waits behind all of them: under
    77 requests/s with 50 in flight (benchmarks/http_load.py) a tick that takes 30 ms idle took
    0.7-2.6 s at p99. A request waiting here costs nothing until its turn; the tick waits behind a
    few handlers at most. The requests' total throughput is what the process's one core gives
    either way."""

    OPEN = frozenset({"/healthz", "/readyz"})

    def __init__(
        self, app: ASGIApp, limit: int, wait: float = 30.0, loop_first: Callable[[float], Awaitable[None]] | None = None
    ) -> None:
        self.app, self.wait, self.loop_first = app, wait, loop_first
        self.slots = anyio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.OPEN:
            await self.app(scope, receive, send)
            return
        with anyio.move_on_after(self.wait):
            async with self.slots:
                if self.loop_first is not None:  # a tick running: it goes first (bounded: 1 s)
                    await self.loop_first(1.0)
                await self.app(scope, receive, send)
                return
        await JSONResponse({"error": "busy: try again"}, 503, {"Retry-After": "1"})(scope, receive, send)


def build_app(context: AppContext, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(context.monitor.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        loop = context.loop
        if loop is not None and loop.last_tick_wall is not None:
            limit = max(3 * loop.interval, 60.0)
            age = time.monotonic() - loop.last_tick_wall
            if age > limit:
                return JSONResponse({"status": "stalled", "seconds_since_last_tick": round(age, 1)}, 503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = {name: problem for name, check in context.readiness.items() if (problem := check())}
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, 503)
        loop = context.loop
        if loop is None or not loop.started or loop.ticks == 0:
            return JSONResponse({"status": "starting"}, 503)
        body: dict[str, Any] = {"status": "ready", "leader": loop.is_leader}
        degraded = context.degraded()
        if degraded:  # still ready: the loop runs; what is missing is named (empire.agent.areas)
            body["degraded"] = degraded
        return JSONResponse(body)

    async def status(request: Request) -> Response:
        return JSONResponse(context.status_body())

    routes: list[BaseRoute] = [
        Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz), Route("/status", status),
        *extra_routes,
    ]  # fmt: skip
    if context.store is not None:
        routes += api_routes(core_endpoints(context.store, context.status_body), context.max_body_bytes)
    routes.append(openapi_route(lambda: app.routes))
    app = Starlette(routes=routes)
    app.add_middleware(BodyLimit, limit=context.max_body_bytes)
    if context.gate is not None:  # a body refused with 413 is audited as such
        app.add_middleware(Guard, gate=context.gate, routes=routes)
    loop_first = context.loop.outside_tick if context.loop is not None else None
    app.add_middleware(
        Admission, limit=context.max_active_requests, loop_first=loop_first
    )  # outermost: waiting costs nothing
    return app


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    yield


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front, so "port in use" is a clear ConfigError, not uvicorn's exit(1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); set EMPIRE_HTTP__PORT") from None
    sock.set_inheritable(True)
    return sock


async def serve(
    app: Starlette,
    host: str,
    port: int,
    *,
    started: anyio.Event | None = None,
    sock: socket.socket | None = None,
    limits: ConnectionLimits | None = None,
    tls: TlsFiles | None = None,
) -> None:
    """Serve `app` until cancelled. Port 0 picks a free port (logged, and stored in `app.state.port`).
    With `tls`, HTTPS only (TLS 1.2+), the certificate reloaded when its files change."""
    import uvicorn

    sock = sock or bind(host, port)
    limits = limits or ConnectionLimits()
    cap = effective_max_connections(limits.max_connections)
    if cap < limits.max_connections:
        logger.warning("HTTP: at most %d connections (EMPIRE_HTTP__MAX_CONNECTIONS %d), to keep file descriptors "
                       "free under this process's RLIMIT_NOFILE", cap, limits.max_connections)  # fmt: skip

    class _Server(uvicorn.Server):
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
            return _no_signals()

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", log_config=None, lifespan="off", access_log=False,
        http=protocol_class(limits), timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
    )  # fmt: skip
    server = _Server(config)

    async def announce() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await anyio.sleep(0.02)
        tg.start_soon(accept, sock, server, cap, tls.context if tls else None, limits.header_timeout)
        app.state.port = sock.getsockname()[1]
        logger.info("%s on %s://%s:%s (/metrics /healthz /readyz /status /v1)", "HTTPS" if tls else "HTTP",
                    "https" if tls else "http", host, app.state.port)  # fmt: skip
        if started is not None:
            started.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            try:
                await server.serve(sockets=[])  # no listener of uvicorn's: `accept` feeds it, under the cap
            except anyio.get_cancelled_exc_class():
                server.should_exit = True
                if server.started:  # close the open connections before leaving
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await server.shutdown()
                raise
            tg.cancel_scope.cancel()
    finally:
        sock.close()
