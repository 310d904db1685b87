"""The ingestion endpoint: access events and revenue figures over HTTP (the agent's first write API).

    POST /v1/content/access    {"events":  [{"id": "track-1", "at": "2026-05-01T10:00:00Z", "count": 3}, ...]}
    POST /v1/content/revenue   {"figures": [{"id": "track-1", "amount": 12.5, "mode": "set"}, ...]}

Why so strict: it is the only way in from outside that changes state. Every call needs
`Authorization: Bearer <EMPIRE_INGEST_TOKEN>`, compared in constant time (`hmac.compare_digest`);
without a configured token the endpoint refuses everything (401). Bodies are JSON with a declared
shape (unknown fields are errors), at most `http.max_body_bytes` long, and a batch is applied all
or nothing: one unknown object id rejects the batch (404) and changes nothing. Values are checked
by the inventory's `ingest_error`, as on every other ingestion path (422 naming the field, e.g.
`events.0.at: 0001-01-01T00:00:00+01:00 is before 1970-01-01`). Each accepted batch
is written to the audit table in the same transaction as the change. Error bodies are
`{"error": "...", "details": [...]}` and never echo the token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.ports import Clock
from empire.agent.tiering.inventory import AccessEvent, Inventory, RevenueFigure, ingest_error
from empire.agent.webio import json_error, read_json_body, tokens_match
from empire.errors import ConfigError, NotFoundError, StateDbError, TemporaryError
from empire.logrepeat import log_unless_reported

__all__ = ["MAX_BATCH", "routes"]

logger = logging.getLogger(__name__)

MAX_BATCH = 10_000
ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccessItem(_Strict):
    id: ObjectId
    at: AwareDatetime | None = Field(default=None, description="default: when the call arrives")
    count: int = Field(default=1, ge=1, le=1_000_000)


class AccessBody(_Strict):
    events: list[AccessItem] = Field(min_length=1, max_length=MAX_BATCH)


class RevenueItem(_Strict):
    id: ObjectId
    amount: float = Field(allow_inf_nan=False)
    mode: Literal["set", "add"] = "set"


class RevenueBody(_Strict):
    figures: list[RevenueItem] = Field(min_length=1, max_length=MAX_BATCH)


def routes(
    inventory: Inventory,
    *,
    token: SecretStr | None,
    clock: Clock,
    half_life: Callable[[], timedelta],
    max_body_bytes: int = 1_048_576,
    prefix: str = "/v1/content",
) -> list[Route]:
    """Starlette routes for `build_app(context, extra_routes=...)`."""
    expected = token.get_secret_value().encode() if token is not None and token.get_secret_value() else None

    def authenticate(request: Request) -> JSONResponse | None:
        challenge = {"WWW-Authenticate": 'Bearer realm="empire-ingest"'}
        if expected is None:
            return json_error(401, "ingest endpoint disabled: no ingest token configured (EMPIRE_INGEST_TOKEN)",
                              headers=challenge)  # fmt: skip
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return json_error(401, "missing bearer token (Authorization: Bearer <token>)", headers=challenge)
        if not tokens_match(given, expected):
            return json_error(401, "invalid bearer token", headers=challenge)
        return None

    async def read_json(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
        data = await read_json_body(request, max_body_bytes)
        if isinstance(data, JSONResponse):
            return data
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            details = [{"path": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                       for e in exc.errors(include_url=False)[:20]]  # fmt: skip
            return json_error(422, "invalid body: " + "; ".join(f"{d['path']}: {d['message']}" for d in details[:3]),
                              details)  # fmt: skip

    def first_error(name: str, items: list[AccessEvent] | list[RevenueFigure], now: datetime) -> JSONResponse | None:
        for i, item in enumerate(items):
            if (why := ingest_error(item, now)) is not None:
                path, _, message = why.partition(": ")
                return json_error(422, f"invalid body: {name}.{i}.{why}", [{"path": f"{name}.{i}.{path}",
                                                                           "message": message}])  # fmt: skip
        return None

    def actor(request: Request) -> str:
        host = request.client.host if request.client else "unknown"
        return f"http:{host}"

    async def apply(write: Callable[[], Any]) -> JSONResponse:
        try:
            updated = await write()
        except NotFoundError as exc:
            return json_error(404, f"{exc}; nothing was changed")
        except ConfigError as exc:
            return json_error(422, f"invalid body: {exc}; nothing was changed")
        except (TemporaryError, StateDbError) as exc:
            log_unless_reported(logger, exc, "ingest failed temporarily: %s", exc)
            return json_error(503, "state database unavailable; retry later", headers={"Retry-After": "5"})
        return JSONResponse({"updated": updated})

    async def access(request: Request) -> JSONResponse:
        if (denied := authenticate(request)) is not None:
            return denied
        body = await read_json(request, AccessBody)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, AccessBody)
        now = clock.now()
        events = [AccessEvent(e.id, e.at or now, e.count) for e in body.events]
        if (refused := first_error("events", events, now)) is not None:
            return refused
        events = [AccessEvent(e.object_id, e.at.astimezone(UTC), e.count) for e in events]
        return await apply(lambda: inventory.record_access(events, half_life(), actor=actor(request), at=now))

    async def revenue(request: Request) -> JSONResponse:
        if (denied := authenticate(request)) is not None:
            return denied
        body = await read_json(request, RevenueBody)
        if isinstance(body, JSONResponse):
            return body
        assert isinstance(body, RevenueBody)
        figures = [RevenueFigure(f.id, f.amount, f.mode) for f in body.figures]
        if (refused := first_error("figures", figures, clock.now())) is not None:
            return refused
        return await apply(lambda: inventory.record_revenue(figures, actor=actor(request), at=clock.now()))

    return [
        Route(f"{prefix}/access", access, methods=["POST"]),
        Route(f"{prefix}/revenue", revenue, methods=["POST"]),
    ]
