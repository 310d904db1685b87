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

__all__ = ["persona_books"]


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
