"""What the operation spent and earned per persona over a period, from the state DB (`empire report`).

Spend: the cost of the persona's generation jobs that finished in the period (succeeded, or
cancelled after submission: the provider billed them). Revenue: revenue to date of the persona's
tracks created in the period (`content_objects.revenue`, fed by the ingest endpoint and CSV
import). Revenue arrives weeks after the spend, so the last weeks of a period look worse than they
will: the report says so rather than hiding it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select

from empire.agent.pools.jobs import JobState
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["persona_books", "platform_books", "trend_capture"]


async def persona_books(db: Database, since: datetime) -> dict[str, dict[str, float]]:
    """persona -> {"spend", "jobs", "revenue", "tracks"} over [since, now)."""
    j, c = t.jobs.c, t.content_objects.c
    billed = or_(j.state == JobState.succeeded.value, and_(j.state == JobState.cancelled.value, j.cost.is_not(None)))
    spend_q = (
        select(j.persona, func.coalesce(func.sum(j.cost), 0.0), func.count())
        .where(billed, j.finished_at >= since, j.persona.is_not(None))
        .group_by(j.persona)
    )
    revenue_q = (
        select(c.persona, func.coalesce(func.sum(c.revenue), 0.0), func.count())
        .where(c.created_at >= since, c.status != "quarantined", c.persona.is_not(None))
        .group_by(c.persona)
    )
    out: dict[str, dict[str, float]] = {}

    def row(p: str) -> dict[str, float]:
        return out.setdefault(p, {"spend": 0.0, "jobs": 0, "revenue": 0.0, "tracks": 0})

    async with db.connect() as conn:
        for persona, spend, n in (await conn.execute(spend_q)).all():
            row(str(persona)).update(spend=float(spend), jobs=int(n))
        for persona, revenue, n in (await conn.execute(revenue_q)).all():
            row(str(persona)).update(revenue=float(revenue), tracks=int(n))
    return out


async def platform_books(db: Database, since: datetime) -> dict[tuple[str, str], dict[str, float]]:
    """(persona, platform) -> {"revenue", "views", "engagement", "tracks", "spend"} for the tracks
    created in [since, now), from `performance_metrics`. Spend: what publishing on the platform
    cost (its publish jobs) plus the persona's generation spend split evenly across the platforms
    it published on in the period (a track is made once and goes to each of them)."""
    from empire.state.performance import SqlPerformanceStore

    totals = await SqlPerformanceStore(db).totals(since)
    j = t.jobs.c
    billed = or_(j.state == JobState.succeeded.value, and_(j.state == JobState.cancelled.value, j.cost.is_not(None)))
    is_pub = j.idempotency_key.startswith("pub/")
    pub_q = (
        select(j.persona, j.provider, func.coalesce(func.sum(j.cost), 0.0))
        .where(is_pub, billed, j.finished_at >= since, j.persona.is_not(None))
        .group_by(j.persona, j.provider)
    )
    gen_q = (
        select(j.persona, func.coalesce(func.sum(j.cost), 0.0))
        .where(~is_pub, billed, j.finished_at >= since, j.persona.is_not(None))
        .group_by(j.persona)
    )
    async with db.connect() as conn:
        published = {(str(p), str(pl)): float(c) for p, pl, c in (await conn.execute(pub_q)).all()}
        generated = {str(p): float(c) for p, c in (await conn.execute(gen_q)).all()}
    platforms_of: dict[str, set[str]] = {}
    for persona, platform in [*published, *totals]:
        platforms_of.setdefault(persona, set()).add(platform)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for persona, platforms in platforms_of.items():
        share = generated.get(persona, 0.0) / len(platforms)
        for platform in platforms:
            tot = totals.get((persona, platform))
            out[(persona, platform)] = {
                "revenue": tot.revenue if tot else 0.0, "views": tot.views if tot else 0,
                "engagement": tot.engagement if tot else 0, "tracks": tot.tracks if tot else 0,
                "spend": share + published.get((persona, platform), 0.0),
            }  # fmt: skip
    return dict(sorted(out.items()))


async def trend_capture(db: Database, since: datetime) -> dict[str, dict[str, float]]:
    """Revenue of the tracks planned on a trend boost (`meta.trend_boost`, set from the planner's
    `trend_boost` reason) vs the rest, created in [since, now): {"boosted"|"rest": {"tracks",
    "revenue", "per_track"}}."""
    c = t.content_objects.c
    q = select(c.revenue, c.meta).where(c.created_at >= since, c.status != "quarantined", c.persona.is_not(None))
    out = {k: {"tracks": 0, "revenue": 0.0, "per_track": 0.0} for k in ("boosted", "rest")}
    async with db.connect() as conn:
        for revenue, meta in (await conn.execute(q)).all():
            row = out["boosted" if (meta or {}).get("trend_boost") else "rest"]
            row["tracks"] += 1
            row["revenue"] += float(revenue)
    for row in out.values():
        row["per_track"] = row["revenue"] / row["tracks"] if row["tracks"] else 0.0
    return out
