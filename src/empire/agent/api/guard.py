"""The gate in front of the agent's HTTP app: who is calling, how often, and what they changed.

For every request but the kubelet's probes (`/healthz`, `/readyz`, always open and never
limited) and the providers' callbacks (`/v1/providers/...`, which carry the provider's own
token and audit themselves):

1. **authenticate**: a bearer header becomes a `Principal` or a refusal (`auth.Authenticator`),
   kept in the request scope for the routes: an `ApiRoute` that needs a scope answers 401/403
   itself; `/metrics` and `/status` need `read` when `protected` names them;
2. **limit**: at most `rate` requests per second (bursts of `burst`) per caller, the token's
   name or else the client address; over it, 429 with Retry-After. Failed authentications are
   limited per address on their own (`failures`), so guessing tokens is slow and costs one
   database read per allowed guess at most;
3. **audit**: every write (a POST or DELETE under /v1) by an authenticated caller is written to
   the audit table (who, what, when, the status it got, from where) before the response leaves,
   refused ones (403, 422, 404) included. An anonymous write is refused with 401 and not
   written down: a flood of them must not fill the database.

Why a middleware and not a decorator per route: one place decides, so a route added later is
limited and audited without asking for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from empire.agent.api.auth import Authenticator, Denied, Principal
from empire.agent.api.auth import Scope as Need
from empire.agent.api.ratelimit import Buckets
from empire.agent.api.spec import ApiRoute
from empire.agent.records import AuditRecord
from empire.agent.webio import json_error
from empire.errors import TemporaryError

__all__ = ["OPEN_PATHS", "Gate", "Guard"]

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
SELF_AUTHENTICATED = "/v1/providers/"  # provider callbacks: the provider's own token
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PRINCIPAL, DENIED, AUDIT = "empire.principal", "empire.denied", "empire.audit"


@dataclass
class Gate:
    """What the guard needs; the daemon builds one from the settings."""

    auth: Authenticator
    audit: Callable[[AuditRecord], Awaitable[Any]]
    now: Callable[[], datetime]
    rate: Buckets = field(default_factory=lambda: Buckets(50.0, 100.0))
    failures: Buckets = field(default_factory=lambda: Buckets(1.0, 20.0))
    protected: Collection[str] = ()  # of "/metrics", "/status"


class Guard:
    def __init__(self, app: ASGIApp, gate: Gate, routes: Sequence[BaseRoute] = ()) -> None:
        self.app, self.gate = app, gate
        self.endpoints = [r for r in routes if isinstance(r, ApiRoute)]

    def _action(self, scope: Scope) -> str:
        """The endpoint's name (`jobs.submit`), also for a request refused before it got there (413)."""
        for route in self.endpoints:
            if route.matches(scope)[0] is Match.FULL:
                return route.spec.name
        return f"{scope['method']} {scope['path']}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        # /healthz/ too: a redirect to an open path must not be refused for a bad token first
        if scope["type"] != "http" or path.rstrip("/") in OPEN_PATHS or path.startswith(SELF_AUTHENTICATED):
            await self.app(scope, receive, send)
            return
        gate, state = self.gate, scope.setdefault("state", {})
        address = scope["client"][0] if scope.get("client") else "unknown"
        header = _header(scope, b"authorization")
        principal: Principal | None = None
        if header is not None:
            if (wait := gate.failures.wait(f"addr:{address}")) > 0:
                await _refuse(scope, receive, send, 429, "too many failed authentications from this address",
                              retry=wait)  # fmt: skip
                return
            try:
                found = await gate.auth.authenticate(header)
            except TemporaryError as exc:  # the Kubernetes API server could not be asked
                logger.warning("authentication unavailable: %s", exc)
                await _refuse(scope, receive, send, 503, "cannot verify the token now; retry later", retry=5)
                return
            if isinstance(found, Denied):
                gate.failures.take(f"addr:{address}")
                state[DENIED] = found.message
            else:
                principal = found
        state[PRINCIPAL] = principal
        caller = f"{principal.via}:{principal.name}" if principal is not None else f"addr:{address}"
        if (wait := gate.rate.take(caller)) > 0:
            await _refuse(scope, receive, send, 429, "too many requests; slow down", retry=wait)
            return
        if path in gate.protected:
            if principal is None:
                why = state.get(DENIED) or "authentication required (Authorization: Bearer <token>)"
                await _refuse(scope, receive, send, 401, why, challenge=True)
                return
            allowed = (await principal.authorize(path, "get") if principal.authorize is not None
                       else principal.may(Need.read, path))  # fmt: skip
            if not allowed:
                await _refuse(scope, receive, send, 403, f"{principal.name} may not read {path}")
                return
        if principal is None or scope.get("method") not in WRITES or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        await self._audited(scope, receive, send, principal, address)

    async def _audited(self, scope: Scope, receive: Receive, send: Send, who: Principal, address: str) -> None:
        """Run the app; write the audit row when the response starts, before it leaves."""
        held: list[Message] = []
        written = False

        async def write(status: int) -> None:
            nonlocal written
            written = True
            note = scope["state"].get(AUDIT, {})
            if note.get("done") and status < 300:
                return
            method, path = scope["method"], scope["path"]
            details = {"status": status, "method": method, "path": path, "client": address, "via": who.via,
                       **note.get("details", {})}  # fmt: skip
            record = AuditRecord(self.gate.now(), who.name[:128], str(note.get("action") or self._action(scope))[:64],
                                 str(note.get("subject") or path)[:256], details)  # fmt: skip
            try:
                await self.gate.audit(record)
            except Exception as exc:  # the change is made; say loudly that its record is missing
                logger.warning("audit row for %s %s by %s not written: %s", method, path, who.name, exc)

        async def forward(message: Message) -> None:
            if message["type"] == "http.response.start":
                held.append(message)
                return
            if held:
                start = held.pop()
                if not written:
                    await write(start["status"])
                await send(start)
            await send(message)

        try:
            await self.app(scope, receive, forward)
        except Exception:
            if not written:
                await write(500)
            raise


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str, *,
                  retry: float | None = None, challenge: bool = False) -> None:  # fmt: skip
    headers: dict[str, str] = {}
    if retry is not None:
        headers["Retry-After"] = str(max(1, int(retry + 0.999)))
    if challenge:
        headers["WWW-Authenticate"] = 'Bearer realm="empire"'
    await json_error(status, message, headers=headers)(scope, receive, send)
