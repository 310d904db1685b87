"""Serve an ASGI app over real HTTP on 127.0.0.1 in a background thread (uvicorn), for API fakes.

Why a real socket: the adapters under test then exercise httpx exactly as in production
(connection errors, timeouts, status codes, headers), with no transport patching.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["free_port", "serve_in_thread"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int = 0, tls: dict[str, Any] | None = None) -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) while `app` is served; stop it afterwards.

    `tls`: uvicorn's ssl_* options (ssl_certfile, ssl_keyfile, ssl_ca_certs, ssl_cert_reqs); the
    URL is then https://127.0.0.1:PORT (test certificates carry that IP as their subject name)."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="error", lifespan="off", access_log=False, **(tls or {}))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    try:
        port_ = sock.getsockname()[1]
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port_}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
