"""The core's /v1 endpoints: the document, who am I, status, decisions (explain) and the audit log.

    GET /v1/openapi.json             the OpenAPI 3.1 document of every /v1 route (open)
    GET /v1/whoami                   the caller as the agent sees it: name, scopes, how authenticated
    GET /v1/status                   what /status shows (leader, policy, last decision per target, areas)
    GET /v1/decisions/{target}?last= `empire explain` over HTTP: decisions with reasons and their actions
    GET /v1/audit?last=              the audit log, newest first (admin)

The areas add theirs (jobs, content, alerts and silences) the same way: `spec.Endpoint`s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from empire.agent.api.auth import Scope
from empire.agent.api.spec import Call, Endpoint, Error, Reply, Strict, openapi_document
from empire.agent.ports import StateStore
from empire.config.urls import mask_url
from empire.errors import NotFoundError

__all__ = ["API_VERSION", "core_endpoints", "explain", "openapi_route"]

API_VERSION = "1.0.0"


class Whoami(BaseModel):
    name: str
    scopes: list[str]
    via: str = Field(description="token | kubernetes | settings")


class Status(BaseModel):
    """The agent's state; areas add their own sections (pools, tiering, alerting, ...)."""

    model_config = ConfigDict(extra="allow")
    replica: str | None = None
    leader: bool | None = None
    policy_version: str | None = None
    dry_run: bool | None = None
    ticks: int | None = None
    last_tick_at: str | None = None
    targets: dict[str, Any] = Field(default_factory=dict)


class ActionOut(BaseModel):
    kind: str
    state: str
    params: dict[str, Any]
    error: str | None


class DecisionOut(BaseModel):
    at: datetime
    current: int | None
    recommended: int | None
    desired: int | None
    reasons: list[str]
    details: dict[str, Any]
    dry_run: bool
    policy_version: str | None
    actions: list[ActionOut]


class Decisions(BaseModel):
    target: str
    decisions: list[DecisionOut]


class LastQuery(Strict):
    last: int = Field(default=5, ge=1, le=1000, description="how many, newest first")


class AuditOut(BaseModel):
    id: int | None
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


class AuditLog(BaseModel):
    entries: list[AuditOut]


async def explain(store: StateStore, target: str, last: int) -> list[dict[str, Any]]:
    """A target's newest `last` decisions with their actions, as `empire explain --format json`
    prints them (URLs masked: rows journaled by an earlier version may hold a password)."""
    import json

    decisions = await store.recent_decisions(target, limit=last)
    acts: dict[int, list[Any]] = {}
    for a in await store.recent_actions(target, limit=max(50, last * 4)):
        if a.decision_id is not None:
            acts.setdefault(a.decision_id, []).append(a)
    if not decisions:
        known = sorted({d.target for d in await store.recent_decisions(limit=500)})
        raise NotFoundError(f"no decisions recorded for target {target!r} "
                            f"(targets with decisions: {', '.join(known) or 'none yet'})")  # fmt: skip
    out = [
        {"at": d.at.isoformat(), "current": d.current, "recommended": d.recommended, "desired": d.desired,
         "reasons": list(d.reasons), "details": d.details, "dry_run": d.dry_run, "policy_version": d.policy_version,
         "actions": [{"kind": a.kind, "state": a.state.value, "params": a.params, "error": a.error}
                     for a in acts.get(d.id or -1, [])]}
        for d in decisions
    ]  # fmt: skip
    return json.loads(mask_url(json.dumps(out)))


def core_endpoints(store: StateStore, status: Callable[[], dict[str, Any]]) -> list[Endpoint]:
    async def whoami(call: Call) -> Reply:
        p = call.principal
        assert p is not None
        return Reply(200, Whoami(name=p.name, scopes=sorted(s.value for s in p.scopes), via=p.via))

    async def get_status(call: Call) -> Reply:
        return Reply(200, Status.model_validate(status()))

    async def decisions(call: Call) -> Reply:
        target = call.params["target"]
        rows = await explain(store, target, call.query.last)
        return Reply(200, Decisions(target=target, decisions=[DecisionOut.model_validate(r) for r in rows]))

    async def audit(call: Call) -> Reply:
        rows = await store.recent_audit(limit=call.query.last)
        return Reply(200, AuditLog(entries=[AuditOut(id=r.id, at=r.at, actor=r.actor, action=r.action,
                                                     subject=r.subject, details=r.details) for r in rows]))  # fmt: skip

    ok = "OK"
    return [
        Endpoint("GET", "/v1/whoami", "whoami", "Who the agent takes the caller for", whoami,
                 {200: (ok, Whoami)}, tag="core"),
        Endpoint("GET", "/v1/status", "status", "The agent's state (as /status)", get_status,
                 {200: (ok, Status)}, tag="core"),
        Endpoint("GET", "/v1/decisions/{target}", "decisions.explain",
                 "Why the agent did what it did for a target (empire explain)", decisions,
                 {200: (ok, Decisions), 404: ("no decisions recorded for this target", Error)},
                 tag="core", query=LastQuery, params={"target": "a target's name in the policy"}),
        Endpoint("GET", "/v1/audit", "audit.list", "The audit log, newest first", audit,
                 {200: (ok, AuditLog)}, scope=Scope.admin, tag="core", query=LastQuery),
    ]  # fmt: skip


def openapi_route(routes: Callable[[], Sequence[BaseRoute]]) -> Route:
    """`GET /v1/openapi.json`, written from the app's routes on first request (open to anyone:
    it says what exists, never what is stored)."""
    cached: dict[str, Any] = {}

    async def document(request: Request) -> JSONResponse:
        if not cached:
            cached.update(openapi_document(routes(), title="empire agent API", version=API_VERSION))
        return JSONResponse(cached)

    return Route("/v1/openapi.json", document, methods=["GET"])
