"""The callback endpoint for HTTP providers in callback mode (no `poll_url`).

    POST /v1/providers/<provider>/callback     the provider's job status, as it would answer a poll

Why so strict: like the ingest endpoint (`tiering.api`) it is a way in from outside that changes
state (a result marks a paid job done). Each provider has its own token (`http.callback_secret`,
a `SecretRef`), sent in `http.callback_header` (default `Authorization: Bearer <token>`) and
compared in constant time; without a configured token every callback is refused (401). Only a
provider in callback mode has the endpoint (404 otherwise), the body is a JSON object of at most
`http.max_body_bytes` (413) holding the provider's job id at `job_id_path` (422 without it), and
the job must be one of ours in flight (404 otherwise, so the provider retries a callback that
raced our own bookkeeping). Accepted callbacks are recorded on the job's row (`jobs.result`) and
audited in the same transaction, then handed to the waiting poll (`CallbackHub`). Error bodies are
`{"error": "..."}` and never echo a token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.pools.providers.http import CallbackHub, dotted
from empire.agent.ports import Clock
from empire.agent.webio import json_error, read_json_body, tokens_match
from empire.config.secrets import SecretReader, resolve_secret
from empire.errors import ConfigError, EmpireError, StateDbError, TemporaryError
from empire.logrepeat import log_unless_reported
from empire.policies.generation import Provider
from empire.policies.schema import Policy

__all__ = ["CallbackStore", "callback_payload", "callback_result", "callback_routes"]

logger = logging.getLogger(__name__)


def callback_result(job_id: str, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
    """What a store keeps on the job (`jobs.result`) for an accepted callback."""
    return {"callback": {"job_id": job_id, "payload": payload, "at": at.isoformat()}}


def callback_payload(result: dict[str, Any] | None, job_id: str) -> dict[str, Any] | None:
    """The payload a store kept for `job_id` in a job's result, or None."""
    cb = (result or {}).get("callback")
    if isinstance(cb, dict) and cb.get("job_id") == job_id and isinstance(cb.get("payload"), dict):
        return dict(cb["payload"])
    return None


class CallbackStore(Protocol):
    """Where accepted callbacks are kept: on the job's row, so whichever replica polls the job finds it.

    `empire.state.callbacks.SqlCallbackStore` writes `jobs.result` and an `audit` row in one
    transaction; `empire.agent.pools.memory.MemoryCallbackStore` is the in-process twin
    (`tests/contract/test_callback_store.py` runs one suite over all three)."""

    async def record(
        self,
        provider: str,
        job_id: str,
        payload: dict[str, Any],
        *,
        status: str,
        actor: str,
        at: datetime,
        expected: bool,
    ) -> int | None:
        """Record `payload` on the job in flight on `provider` with provider job id `job_id` and audit
        it; return our job's id, or None when no such job is in flight (audited all the same when
        `expected`: this process waits for it and its row may not be written yet)."""
        ...

    async def lookup(self, provider: str, job_id: str) -> dict[str, Any] | None:
        """`CallbackHub.lookup`: the payload recorded for a job still in flight (by any replica)."""
        ...


def callback_routes(
    policy: Callable[[], Policy],
    hubs: Callable[[], dict[str, CallbackHub]],
    store: CallbackStore,
    clock: Clock,
    *,
    secrets: SecretReader | None = None,
    max_body_bytes: int = 1_048_576,
) -> list[Route]:
    """Starlette routes for the daemon. `hubs()`: the callback hub of each HTTP provider adapter."""

    def provider_of(name: str) -> Provider | None:
        p = next((p for p in policy().providers if p.name == name), None)
        return p if p is not None and p.kind == "http" and p.http is not None and p.http.poll_url is None else None

    def authenticate(p: Provider, request: Request) -> JSONResponse | None:
        assert p.http is not None
        spec = p.http
        challenge = {"WWW-Authenticate": f'Bearer realm="empire-callback-{p.name}"'}
        if spec.callback_secret is None:
            return json_error(401, f"callbacks from {p.name} are disabled: no http.callback_secret configured",
                              headers=challenge)  # fmt: skip
        try:
            token = resolve_secret(spec.callback_secret, kubernetes=secrets).get_secret_value()
        except ConfigError as exc:  # names the reference, never a value
            logger.warning("provider %s callback refused: %s", p.name, exc)
            return json_error(
                503, "callback token unavailable on this replica; retry later", headers={"Retry-After": "30"}
            )
        except EmpireError as exc:
            logger.warning("provider %s callback refused: reading its token failed: %s", p.name, exc)
            return json_error(
                503, "callback token unavailable on this replica; retry later", headers={"Retry-After": "30"}
            )
        expected = f"{spec.callback_scheme} {token}" if spec.callback_scheme else token
        given = request.headers.get(spec.callback_header, "").strip()
        if not given:
            return json_error(401, f"missing callback token ({spec.callback_header} header)", headers=challenge)
        if not tokens_match(given, expected):
            return json_error(401, "invalid callback token", headers=challenge)
        return None

    async def read_json(request: Request) -> dict[str, Any] | JSONResponse:
        data = await read_json_body(request, max_body_bytes)
        if isinstance(data, JSONResponse):
            return data
        if not isinstance(data, dict):
            return json_error(422, "invalid body: a JSON object is expected")
        return data

    async def callback(request: Request) -> JSONResponse:
        name = request.path_params["provider"]
        p = provider_of(name)
        if p is None:
            return json_error(404, f"no provider {name!r} in callback mode (kind http without poll_url)")
        if (denied := authenticate(p, request)) is not None:
            return denied
        body = await read_json(request)
        if isinstance(body, JSONResponse):
            return body
        assert p.http is not None
        job_id = dotted(body, p.http.job_id_path)
        if job_id in (None, "") or isinstance(job_id, dict | list):
            return json_error(422, f"invalid body: no job id at {p.http.job_id_path!r}")
        job_id = str(job_id)
        host = request.client.host if request.client else "unknown"
        hub = hubs().get(name)
        local = hub is not None and hub.expecting(name, job_id)
        status = str(dotted(body, p.http.status_path))[:64]
        try:
            recorded = await store.record(name, job_id, body, status=status, actor=f"http:{host}", at=clock.now(),
                                          expected=local)  # fmt: skip
        except (TemporaryError, StateDbError) as exc:
            if not local:
                log_unless_reported(logger, exc, "provider callback not recorded: %s", exc)
                return json_error(503, "state database unavailable; retry later", headers={"Retry-After": "5"})
            recorded = None
        if recorded is None and not local:
            return json_error(404, f"no job of ours in flight on {name} with id {job_id!r}")
        if local:
            assert hub is not None
            hub.deliver(name, job_id, body)
        logger.info("provider %s called back for job %s (%s)", name, recorded if recorded is not None else job_id,
                    "delivered" if local else "recorded")  # fmt: skip
        return JSONResponse({"accepted": True, "job": recorded}, 200)

    return [Route("/v1/providers/{provider}/callback", callback, methods=["POST"])]
