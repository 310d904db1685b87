"""The agent's HTTP port against idle, slow and crowding clients, on real loopback sockets.

Timeouts are set to fractions of a second so that the tests wait little; the defaults are 10 s
(headers), 30 s (body), 5 s (keep-alive) and 100 connections."""

from __future__ import annotations

import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.http import ConnectionLimits, serve
from empire.agent.webio import read_json_body
from fakes.server import free_port

pytestmark = pytest.mark.anyio

LIMITS = ConnectionLimits(header_timeout=0.5, body_timeout=0.5, keep_alive=0.3, max_connections=5)


def app_with(received: list[object], release: anyio.Event | None = None) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ingest(request: Request) -> JSONResponse:
        data = await read_json_body(request, 4096)
        received.append(data)
        return data if isinstance(data, JSONResponse) else JSONResponse({"ok": True})

    async def busy(request: Request) -> JSONResponse:
        assert release is not None
        await release.wait()
        return JSONResponse({"status": "done"})

    return Starlette(routes=[Route("/healthz", healthz), Route("/ingest", ingest, methods=["POST"]),
                             Route("/busy", busy)])  # fmt: skip


@contextmanager
def raw(port: int) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        yield s
    finally:
        s.close()


def closed_after(s: socket.socket, limit: float = 5.0) -> tuple[float, bytes]:
    """Seconds until the server closed `s`, and what it sent before."""
    start, got = time.monotonic(), b""
    s.settimeout(limit)
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return time.monotonic() - start, got


@contextmanager
def serving(app: Starlette, limits: ConnectionLimits = LIMITS) -> Iterator[int]:
    """`serve()` in a thread of its own (the tests talk to it with blocking sockets)."""
    import threading

    port, up, stop = free_port(), threading.Event(), threading.Event()

    async def main() -> None:
        started = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(app, "127.0.0.1", port, started=started, limits=limits))
            await started.wait()
            up.set()
            while not stop.is_set():  # noqa: ASYNC110 - the stop signal comes from another thread
                await anyio.sleep(0.02)
            tg.cancel_scope.cancel()

    thread = threading.Thread(target=anyio.run, args=(main,), daemon=True)
    thread.start()
    assert up.wait(10)
    try:
        yield port
    finally:
        stop.set()
        thread.join(10)


def test_an_idle_connection_is_closed_after_the_header_timeout() -> None:
    with serving(app_with([])) as port, raw(port) as s:
        seconds, got = closed_after(s)
    assert 0.4 < seconds < 2.0 and got == b""


def test_slow_headers_get_408_and_are_closed() -> None:
    with serving(app_with([])) as port, raw(port) as s:
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # a header line now and then, never the blank line
            time.sleep(0.1)
            s.sendall(b"X-Slow: 1\r\n")
        _, got = closed_after(s)
    assert time.monotonic() - start < 2.0
    assert got.startswith(b"HTTP/1.1 408 ") and b"request headers not received within 0.5s" in got


def test_a_slow_body_is_cut_off_and_nothing_is_handled_half_way() -> None:
    received: list[object] = []
    with serving(app_with(received)) as port, raw(port) as s:
        s.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        start = time.monotonic()
        s.sendall(b'{"a": ')
        seconds, got = closed_after(s)
    assert 0.4 < seconds < 2.0 and time.monotonic() - start < 2.0
    assert b"200" not in got
    assert all(isinstance(r, JSONResponse) and r.status_code == 400 for r in received)  # the handler saw the client go


def test_an_idle_keep_alive_connection_is_closed() -> None:
    with serving(app_with([])) as port, raw(port) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        seconds, got = closed_after(s)
    assert got.startswith(b"HTTP/1.1 200 ") and seconds < 2.0


def test_at_the_cap_a_new_client_displaces_the_longest_idle_one() -> None:
    """Five idle sockets fill the cap; a health probe still gets its answer at once."""
    with serving(app_with([])) as port:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        try:
            time.sleep(0.1)
            start = time.monotonic()
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert r.status_code == 200 and time.monotonic() - start < 0.3
            seconds, _ = closed_after(idle[0], 1.0)  # the oldest was closed to make room
            assert seconds < 0.2
        finally:
            for s in idle:
                s.close()


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503() -> None:
    release = anyio.Event()
    with serving(app_with([], release)) as port:
        busy = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        try:
            for s in busy:
                s.sendall(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json() == {"error": "too many connections; retry later"}
        finally:
            for s in busy:
                s.close()


def test_the_servers_own_warnings_reach_the_root_logger(caplog) -> None:
    """uvicorn runs without a logging config of its own, so its lines pass the repeat filter."""
    caplog.set_level(logging.WARNING)
    with serving(app_with([])) as port, raw(port) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        _, got = closed_after(s)
    assert got.startswith(b"HTTP/1.1 400 ")
    assert any(r.name == "uvicorn.error" and "Invalid HTTP request" in r.getMessage() for r in caplog.records)


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


@pytest.mark.slow
def test_150_idle_sockets_under_a_128_file_limit_leave_the_daemon_healthy(tmp_path: Path) -> None:
    """The reported incident, as `empire run` with RLIMIT_NOFILE 128: 150 idle unauthenticated
    sockets made /healthz time out, SQLite fail to open its file, and the log grow by 237 MB."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
    env.update(EMPIRE_DATA_DIR=str(tmp_path / "data"), KUBECONFIG=str(tmp_path / "none"), EMPIRE_HTTP__PORT=str(port),
               EMPIRE_HTTP__HEADER_TIMEOUT="1")  # fmt: skip
    log = tmp_path / "daemon.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "empire", "run"], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=_limit_files)  # fmt: skip
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.1)
        for _ in range(150):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(5):  # probes during the flood, and after the idle sockets time out
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert r.status_code == 200, r.text
            status = httpx.get(f"http://127.0.0.1:{port}/status", timeout=2)
            assert status.status_code == 200
            time.sleep(0.5)
        assert all(closed_after(s, 3.0)[0] < 3.0 for s in idle)  # every idle socket was closed by the daemon
        open_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert open_fds < 64, open_fds
    finally:
        for s in idle:
            s.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    out = log.read_text()
    assert code == 0, out[-3000:]
    assert "out of system resource" not in out and "unable to open database file" not in out
    assert "Traceback" not in out
    assert "HTTP: at most 64 connections" in out
    assert re.search(r"closed the connection from .* for its request \(repeated \d+ times in the last \d+s\)", out)
    assert len(out) < 20_000, f"{len(out)} bytes of log: {out[-2000:]}"
