"""What the status page shows, gathered in one JSON document (`GET /ui/data`, and the page's HTML).

Built from the same sources as `/status` and the CLI, so the page reads the same against a
production daemon (Prometheus, a real cluster) as against `empire run --simulate`:

* `status`: the `/status` body itself (loop, targets, areas, pools' breakers and spend, alert rules);
* `history`: the daemon's in-memory ring of the last hours (`empire.agent.history`);
* `decisions`: each target's latest decisions from the journal, as `empire explain` renders them;
* `alerts`, `silences`, `pools`, `tiers`, `personas`: the state DB, read as `empire alerts`,
  `empire pools status`, `empire tiers status` and `empire report` read it.

A section that cannot be read (the state DB is down) carries `{"error": ...}` and the others are
still shown: a status page must not go blank when one of the things it reports on is broken.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from empire.agent.explaining import render
from empire.agent.history import StatusHistory, demand_signal
from empire.agent.ports import StateStore
from empire.agent.records import jsonable
from empire.config.urls import mask_url
from empire.policies.schema import Policy

if TYPE_CHECKING:
    from empire.state.database import Database

__all__ = ["PageSources", "gather"]

logger = logging.getLogger(__name__)

REVENUE_PERIOD = timedelta(days=30)
DECISIONS_SHOWN = 3
RESOLVED_SHOWN = timedelta(hours=6)


@dataclass
class PageSources:
    status: Callable[[], dict[str, Any]]  # the /status body
    history: StatusHistory
    store: StateStore
    db: Database | None
    policy: Callable[[], Policy]
    now: Callable[[], datetime]


async def _section(name: str, read: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await read()
    except Exception as exc:
        logger.debug("status page: %s unavailable: %s", name, exc)
        return {"error": mask_url(f"{type(exc).__name__}: {exc}")}


async def gather(src: PageSources) -> dict[str, Any]:
    now, pol = src.now(), src.policy()
    status = src.status()
    out: dict[str, Any] = {"now": now.isoformat(), "status": status, "targets": {}}
    for t in pol.targets:
        signal = demand_signal(t)
        out["targets"][t.name] = {
            "signal": {"name": signal.name, "type": signal.type.value, "target": signal.target} if signal else None,
            "min_replicas": t.min_replicas, "max_replicas": t.max_replicas,
            "history": [p.as_dict() for p in src.history.points(t.name)],
            "decisions": await _section("decisions", lambda t=t: _decisions(src.store, t.name)),
        }  # fmt: skip
    db = src.db
    if db is None:
        missing = {"error": "no state database"}
        out.update(alerts=missing, silences=missing, pools=missing, tiers=missing, personas=missing)
        return jsonable(out)
    out["alerts"] = await _section("alerts", lambda: _alerts(db, now))
    out["silences"] = await _section("silences", lambda: _silences(db, now))
    out["pools"] = await _section("pools", lambda: _pools(db, pol, status, now))
    out["tiers"] = await _section("tiers", lambda: _tiers(db, pol))
    out["personas"] = await _section("personas", lambda: _personas(db, pol, now))
    return jsonable(out)


async def _decisions(store: StateStore, target: str) -> list[dict[str, Any]]:
    decisions = await store.recent_decisions(target, limit=DECISIONS_SHOWN)
    actions: dict[int, list[Any]] = {}
    for a in await store.recent_actions(target, limit=DECISIONS_SHOWN * 4):
        if a.decision_id is not None:
            actions.setdefault(a.decision_id, []).append(a)
    return [{"at": d.at.isoformat(), "reasons": list(d.reasons), "current": d.current, "desired": d.desired,
             "explain": mask_url("\n".join(render([d], actions)))} for d in decisions]  # fmt: skip


async def _alerts(db: Database, now: datetime) -> list[dict[str, Any]]:
    """Firing alerts, then those resolved within `RESOLVED_SHOWN` (an anomaly can come and go
    between two refreshes, and in a simulation between two blinks)."""
    from empire.state.alerts import SqlAlertStore

    found = await SqlAlertStore(db).list_alerts(None, limit=200)
    shown = [a for a in found if a.ends_at is None or a.ends_at >= now - RESOLVED_SHOWN]
    shown.sort(key=lambda a: (a.ends_at is not None, -a.starts_at.timestamp()))
    return [{"rule": a.rule, "severity": a.severity, "labels": dict(a.labels), "state": "firing" if a.firing else "resolved",
             "summary": a.annotations.get("summary", ""), "since": a.starts_at.isoformat(),
             "ended": a.ends_at.isoformat() if a.ends_at else None, "value": a.value}
            for a in shown[:50]]  # fmt: skip


async def _silences(db: Database, now: datetime) -> list[dict[str, Any]]:
    from empire.state.alerts import SqlAlertStore

    found = await SqlAlertStore(db).silences(now)
    return [{"id": s.id[:8], "matchers": list(s.matchers), "state": s.state(now), "ends_at": s.ends_at.isoformat(),
             "created_by": s.created_by, "comment": s.comment} for s in found]  # fmt: skip


async def _pools(db: Database, pol: Policy, status: dict[str, Any], now: datetime) -> dict[str, Any]:
    from empire.state.jobs import SqlJobQueue

    queue = SqlJobQueue(db)
    in_flight = await queue.in_flight()
    spend = await queue.spend(now)
    breakers = (status.get("pools") or {}).get("breakers") or {}
    accounts = []
    for p in pol.providers:
        for a in p.accounts:
            state = breakers.get(f"{p.name}/{a.name}") or {}
            accounts.append({
                "provider": p.name, "account": a.name, "enabled": a.enabled,
                "requests_per_minute": a.requests_per_minute, "max_concurrent": a.max_concurrent,
                "in_flight": in_flight.get((p.name, a.name), 0),
                "state": state.get("state") or ("ok" if a.enabled else "disabled"),
                "until": state.get("until"), "last_error": state.get("last_error"),
            })  # fmt: skip
    depth: dict[str, int] = {}
    for (state, _prio), n in (await queue.counts()).items():
        depth[state] = depth.get(state, 0) + n
    providers = [{"name": p.name, "spend_today": spend.provider_day(p.name), "daily": p.budget.daily,
                  "spend_month": spend.provider_month(p.name), "monthly": p.budget.monthly} for p in pol.providers]  # fmt: skip
    return {"accounts": accounts, "jobs": depth, "queued": depth.get("queued", 0) + depth.get("failed", 0),
            "spend_today": spend.day, "spend_month": spend.month, "budget": pol.budget.model_dump(mode="json"),
            "providers": providers}  # fmt: skip


async def _tiers(db: Database, pol: Policy) -> list[dict[str, Any]]:
    from empire.state.inventory import SqlInventory

    usage = {u.tier: u for u in await SqlInventory(db).usage()}
    rows = []
    for tier in pol.storage.tiers:
        u = usage.get(tier.name)
        b = u.bytes if u else 0
        rows.append({"tier": tier.name, "objects": u.objects if u else 0, "bytes": b,
                     "cost_per_month": b / 1024**3 * tier.cost_per_gb_month})  # fmt: skip
    return rows


async def _personas(db: Database, pol: Policy, now: datetime) -> list[dict[str, Any]]:
    from empire.state.business import persona_books

    books = await persona_books(db, now - REVENUE_PERIOD)
    names = [p.name for p in pol.personas] + sorted(set(books) - {p.name for p in pol.personas})
    rows = []
    for name in names:
        b = books.get(name) or {"spend": 0.0, "jobs": 0, "revenue": 0.0, "tracks": 0}
        roi = (b["revenue"] - b["spend"]) / b["spend"] if b["spend"] > 0 else None
        rows.append({"persona": name, **b, "roi": roi})
    return rows
