"""Connection limits for the agent's HTTP port: a slow or idle client cannot hold a socket, and
a crowd of them cannot take the file descriptors the daemon needs.

Why: uvicorn bounds only the idle time *between* requests (keep-alive). A client that connects
and sends nothing, or sends its headers or body a byte at a time, held its socket for as long as
it liked; 150 such sockets under a 128-file limit (RLIMIT_NOFILE) left SQLite unable to open its
file, made `/healthz` time out, and the event loop logged "socket.accept() out of system
resource" without end.

`protocol_class(limits)` is uvicorn's h11 protocol with, per connection:

* a **header deadline**: the request line and headers must arrive within `header_timeout`
  seconds of the connection opening or of the previous response ending (idle and slow-header
  clients alike; a partial request is answered 408 before the close, an idle one just closed);
* a **body deadline**: the whole body within `body_timeout` seconds of the headers (the handler
  reading it then sees the client as gone, answers nothing, and writes nothing);
* **keep-alive**: `keep_alive` idle seconds between requests (uvicorn's own timer);
and `accept()`, the accept loop, keeps a **connection cap**: at most `max_connections` open at
once. At the cap a new connection closes the one that has waited longest for its request headers
(an idle or slow client: what nginx does with idle keep-alive connections), so a health probe gets
in during a flood of idle sockets; when every connection is busy in a handler, the new one is
refused with 503. The cap is lowered to leave `RESERVED_FDS` descriptors free under the process's
RLIMIT_NOFILE.

h11 is the parser (pure Python, the state machine read here through its public `their_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["RESERVED_FDS", "ConnectionLimits", "accept", "effective_max_connections", "protocol_class"]

logger = logging.getLogger(__name__)

RESERVED_FDS = 64  # the state database (3 files per SQLite connection), clients, logs, pipes
BACKLOG = 2048  # connections the kernel queues for us (uvicorn's default)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_connections: int = 100


def effective_max_connections(configured: int) -> int:
    """`configured`, lowered so that RESERVED_FDS descriptors stay free under RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - RESERVED_FDS))


def _canned(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": message}).encode()
    extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


class _Guarded(H11Protocol):
    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = "headers"  # headers -> body -> app -> (response sent) headers ...
        self._since = 0.0
        self._partial = False  # some bytes of the request under way have arrived
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting_since(self) -> float | None:
        """When it began to wait for request headers (idle or slow client), None while busy."""
        return self._since if self._phase == "headers" and not self.transport.is_closing() else None

    def close_waiting(self) -> None:
        """Close it now (a newer connection needs its place) and count it out at once."""
        self._disarm()
        self.connections.discard(self)
        self.transport.close()

    # -------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if data and self._phase == "headers":
            self._partial = True
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()
            self._track()  # a pipelined request may be under way already

    # -------------------------------------------------------------- phases and deadlines
    def _await_headers(self) -> None:
        self._phase, self._since, self._partial = "headers", self.loop.time(), False
        self._arm(self.limits.header_timeout)

    def _track(self) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:
            return
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._phase = "body"
                self._arm(self.limits.body_timeout)
        elif self._phase != "app":  # the whole request is in (or the connection is ending)
            self._phase = "app"
            self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._phase == "headers" and not self._partial:
            self.transport.close()  # idle: nothing to answer
            return
        what = "headers" if self._phase == "headers" else "body"
        seconds = self.limits.header_timeout if what == "headers" else self.limits.body_timeout
        logger.warning("HTTP request %s from %s not received within %gs: connection closed", what,
                       self.client, seconds)  # fmt: skip
        if what == "headers":  # nothing of ours was sent on this request yet: say why
            self.transport.write(_canned(408, "Request Timeout", f"request headers not received within {seconds:g}s"))
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[H11Protocol]:
    """The protocol class to give `uvicorn.Config(http=...)`."""
    return type("GuardedH11Protocol", (_Guarded,), {"limits": limits})


async def accept(
    listener: socket.socket,
    server: Any,
    cap: int,
    tls: Callable[[], ssl.SSLContext] | None = None,
    handshake_timeout: float = 10.0,
) -> None:
    """Accept connections on `listener` for the uvicorn `server` (started with `sockets=[]`), one
    at a time, never more than `cap` open.

    Why our own accept loop: the event loop's accepts up to `backlog` sockets per wake-up before
    any protocol sees one, so a burst of idle clients took every descriptor before a cap could
    act. Here a socket over the cap is closed at once, or closes a waiting one, before the next
    accept; an accept that fails for want of descriptors leaves the client in the kernel's queue.

    With `tls` (a function giving the current `SSLContext`, `empire.agent.tls.TlsFiles.context`)
    each handshake runs in a task of its own, so a client that never finishes one holds up no
    other (it is cut off after `handshake_timeout`); handshakes under way count against the cap."""
    loop = asyncio.get_running_loop()
    config, state = server.config, server.server_state
    handshaking: set[asyncio.Task[None]] = set()

    def protocol() -> asyncio.Protocol:
        return config.http_protocol_class(config=config, server_state=state, app_state=server.lifespan.state,
                                          _loop=loop)  # fmt: skip

    listener.setblocking(False)
    listener.listen(BACKLOG)
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: not ours to fix, but not a reason to stop
            logger.warning("HTTP accept failed (%s); the client waits in the queue", exc.strerror or exc)
            await asyncio.sleep(0.1)
            continue
        busy = len(state.connections) + len(handshaking)
        if busy >= cap and not _close_longest_waiting(state.connections, cap):
            _refuse(conn, cap, plain=tls is None)
            continue
        if tls is not None:
            task = asyncio.create_task(_handshake(loop, protocol, conn, tls(), handshake_timeout))
            handshaking.add(task)
            task.add_done_callback(handshaking.discard)
            continue
        try:
            await loop.connect_accepted_socket(protocol, conn)
        except OSError as exc:  # the client is gone already
            logger.debug("HTTP connection dropped before it started: %s", exc)
            conn.close()


async def _handshake(
    loop: asyncio.AbstractEventLoop, protocol: Callable[[], asyncio.Protocol], conn: socket.socket,
    context: ssl.SSLContext, handshake_timeout: float,
) -> None:  # fmt: skip
    try:
        await loop.connect_accepted_socket(protocol, conn, ssl=context, ssl_handshake_timeout=handshake_timeout)
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:  # a plain-HTTP client, an old TLS version
        logger.debug("HTTPS handshake failed: %s", exc)
        conn.close()


def _close_longest_waiting(connections: set[Any], cap: int) -> bool:
    """Close the connection that has waited longest for request headers; False if none waits."""
    waiting = [(c.waiting_since, c) for c in connections if isinstance(c, _Guarded) and c.waiting_since is not None]
    if not waiting:
        return False
    _, victim = min(waiting, key=lambda pair: pair[0])
    logger.warning("HTTP connection limit (%d) reached: closed the connection from %s that waited longest "
                   "for its request", cap, victim.client)  # fmt: skip
    victim.close_waiting()
    return True


def _refuse(conn: socket.socket, cap: int, plain: bool = True) -> None:
    logger.warning("HTTP connection limit (%d) reached with every connection busy: refused one", cap)
    if plain:  # before a TLS handshake there is no way to say why: just close
        with contextlib.suppress(OSError):
            conn.send(_canned(503, "Service Unavailable", "too many connections; retry later", retry_after=1))
    conn.close()
