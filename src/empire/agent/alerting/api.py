"""The built-in dashboard's HTTP face: `GET /alerts` (JSON), mounted by the agent's Starlette app.

    GET /alerts                      firing alerts, active silences, outbox depth per receiver
    GET /alerts?state=resolved       recently resolved (state=all: both), newest first
    GET /alerts?target=api&limit=20  one target's alerts

Each alert carries `muted` ("silenced" / "inhibited" / null) as of the dispatcher's last pass, and
the `explain` command that tells why the agent did what it did about it. Read-only and unauthenticated
like `/status`: labels and summaries only, never a receiver's address or secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.alerting.muting import Silence
from empire.agent.alerting.store import AlertStore
from empire.agent.ports import Clock
from empire.agent.webio import json_error

if TYPE_CHECKING:
    from empire.agent.alerting.service import AlertService

__all__ = ["routes", "silence_json"]

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
        now = clock.now()
        rows = await store.list_alerts(_STATES[state_arg], q.get("target"), limit)
        muted = dict(service.last_plan.muted) if service is not None and service.last_plan is not None else {}
        body = {
            "generatedAt": now.isoformat(),
            "alerts": [{**a.to_json(), "muted": muted.get(a.fingerprint) if a.firing else None} for a in rows],
            "silences": [silence_json(s, now) for s in await store.silences(now)],
            "outbox": await store.outbox_depth(),
        }
        return JSONResponse(body)

    return [Route("/alerts", alerts, methods=["GET"])]
