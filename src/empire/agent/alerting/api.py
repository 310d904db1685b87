"""Alerts and silences over HTTP: the built-in dashboard's `/alerts` and the versioned API.

    GET /alerts                      firing alerts, active silences, outbox depth per receiver
    GET /alerts?state=resolved       recently resolved (state=all: both), newest first
    GET /alerts?target=api&limit=20  one target's alerts

Each alert carries `muted` ("silenced" / "inhibited" / null) as of the dispatcher's last pass.
`/alerts` is read-only and unauthenticated like `/status`: labels and summaries only, never a
receiver's address or secret. The same under /v1, with tokens (`empire.agent.api`):

    GET    /v1/alerts?state=&target=&limit=     as /alerts (read)
    GET    /v1/silences?all=false               active and pending silences (read)
    POST   /v1/silences                         add one, as `empire silence add` checks it (write)
    DELETE /v1/silences/{id}                    expire one now, by id or a unique prefix (write)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.alerting.muting import Silence, check_silence
from empire.agent.alerting.store import AlertStore
from empire.agent.api.auth import Scope
from empire.agent.api.spec import Call, Endpoint, Error, Reply, Strict
from empire.agent.ports import Clock
from empire.agent.webio import json_error
from empire.policies.durations import MAX_DURATION

if TYPE_CHECKING:
    from empire.agent.alerting.service import AlertService

__all__ = ["endpoints", "routes", "silence_json"]

_STATES = {"firing": "firing", "resolved": "resolved", "all": None}


def silence_json(s: Silence, now: Any) -> dict[str, Any]:
    return {
        "id": s.id, "matchers": list(s.matchers), "startsAt": s.starts_at.isoformat(), "endsAt": s.ends_at.isoformat(),
        "createdBy": s.created_by, "comment": s.comment, "state": s.state(now),
    }  # fmt: skip


def routes(store: AlertStore, clock: Clock, service: AlertService | None = None) -> list[Route]:
    """Starlette routes for `build_app(context, extra_routes)`."""

    async def alerts(request: Request) -> JSONResponse:
        q = request.query_params
        state_arg = q.get("state", "firing")
        if state_arg not in _STATES:
            return json_error(400, f"state must be one of {', '.join(_STATES)}")
        try:
            limit = max(1, min(1000, int(q.get("limit", "100"))))
        except ValueError:
            return json_error(400, "limit must be an integer")
        return JSONResponse(await overview(store, clock, service, state_arg, q.get("target"), limit))

    return [Route("/alerts", alerts, methods=["GET"])]


async def overview(store: AlertStore, clock: Clock, service: AlertService | None, state: str, target: str | None,
                   limit: int) -> dict[str, Any]:  # fmt: skip
    now = clock.now()
    rows = await store.list_alerts(_STATES[state], target, limit)
    muted = dict(service.last_plan.muted) if service is not None and service.last_plan is not None else {}
    return {
        "generatedAt": now.isoformat(),
        "alerts": [{**a.to_json(), "muted": muted.get(a.fingerprint) if a.firing else None} for a in rows],
        "silences": [silence_json(s, now) for s in await store.silences(now)],
        "outbox": await store.outbox_depth(),
    }


class SilenceOut(BaseModel):
    id: str
    matchers: list[str]
    startsAt: datetime
    endsAt: datetime
    createdBy: str
    comment: str
    state: Literal["pending", "active", "expired"]


class SilenceList(BaseModel):
    silences: list[SilenceOut]


class AlertsOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    generatedAt: datetime
    alerts: list[dict[str, Any]]
    silences: list[SilenceOut]
    outbox: dict[str, int] = Field(description="pending notifications per receiver")


class AlertQuery(Strict):
    state: Literal["firing", "resolved", "all"] = "firing"
    target: str | None = Field(default=None, max_length=128)
    limit: int = Field(default=100, ge=1, le=1000)


class SilenceQuery(Strict):
    all: bool = Field(default=False, description="include expired silences")


class SilenceAdd(Strict):
    matchers: list[str] = Field(min_length=1, max_length=20, description='Alertmanager syntax: alertname="x"')
    comment: str = Field(min_length=1, max_length=1000, description="why")
    startsAt: AwareDatetime | None = Field(default=None, description="default: now")
    endsAt: AwareDatetime | None = Field(default=None, description="give endsAt or duration_seconds")
    duration_seconds: float | None = Field(default=None, gt=0, le=MAX_DURATION.total_seconds())

    @model_validator(mode="after")
    def _one_end(self) -> SilenceAdd:
        if (self.endsAt is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of endsAt and duration_seconds")
        return self


def endpoints(store: AlertStore, clock: Clock, service: AlertService | None = None) -> list[Endpoint]:
    def out(s: Silence, now: datetime) -> SilenceOut:
        return SilenceOut.model_validate(silence_json(s, now))

    async def list_alerts(call: Call) -> Reply:
        q: AlertQuery = call.query
        return Reply(200, AlertsOut.model_validate(await overview(store, clock, service, q.state, q.target, q.limit)))

    async def list_silences(call: Call) -> Reply:
        now = clock.now()
        rows = await store.silences(now, include_expired=call.query.all)
        return Reply(200, SilenceList(silences=[out(s, now) for s in rows]))

    async def add(call: Call) -> Reply:
        b: SilenceAdd = call.body
        now = clock.now()
        start = b.startsAt or now
        end = b.endsAt or start + timedelta(seconds=b.duration_seconds or 0)
        matchers = check_silence(b.matchers, start, end, now, b.comment)  # ConfigError: 422
        s = await store.add_silence(matchers, start, end, call.actor, b.comment.strip(), now)
        call.audit(f"silence/{s.id}", matchers=matchers, ends_at=end.isoformat())
        return Reply(201, out(s, now))

    async def expire(call: Call) -> Reply:
        now = clock.now()
        s = await store.expire_silence(call.params["id"], now)  # NotFoundError 404, ambiguous ConfigError 422
        call.audit(f"silence/{s.id}")
        return Reply(200, out(s, now))

    return [
        Endpoint("GET", "/v1/alerts", "alerts.list", "Alerts (firing by default), silences, outbox depth",
                 list_alerts, {200: ("OK", AlertsOut)}, tag="alerts", query=AlertQuery),
        Endpoint("GET", "/v1/silences", "silences.list", "Active and pending silences (all=true: expired too)",
                 list_silences, {200: ("OK", SilenceList)}, tag="alerts", query=SilenceQuery),
        Endpoint("POST", "/v1/silences", "silences.add", "Mute matching alerts for a while", add,
                 {201: ("added", SilenceOut)}, scope=Scope.write, tag="alerts", body=SilenceAdd),
        Endpoint("DELETE", "/v1/silences/{id}", "silences.expire", "End a silence now", expire,
                 {200: ("expired (or had ended already)", SilenceOut), 404: ("no such silence", Error)},
                 scope=Scope.write, tag="alerts", params={"id": "the silence's id or a unique prefix of it"}),
    ]  # fmt: skip
