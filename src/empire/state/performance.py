"""`SqlPerformanceStore`: the pools' `PerformanceStore` port on the state DB (`performance_metrics`).

One row per (track, platform, UTC day), upserted (INSERT ... ON CONFLICT DO UPDATE on SQLite and
PostgreSQL alike): a platform's revised figure replaces the row. In the same transaction each
touched track's `content_objects.revenue` becomes the sum of its rows, and the batch is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from empire.agent.pools.performance import PerformanceFigure, PlatformTotals, refuse_bad_figures
from empire.errors import NotFoundError
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlPerformanceStore"]

P = t.performance_metrics
CHUNK = 500  # rows per INSERT statement (SQLite's bound-parameter limit)


class SqlPerformanceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, figures: Sequence[PerformanceFigure], *, actor: str, at: datetime, source: str) -> int:
        if not figures:
            return 0
        refuse_bad_figures(figures, at.date())
        last = {(f.object_id, f.platform, f.period): f for f in figures}  # within a batch the last one wins
        ids = sorted({f.object_id for f in figures})
        c = t.content_objects.c
        upsert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        async with self.db.begin() as conn:
            q = select(c.id).where(c.id.in_(ids))
            if self.db.dialect == "postgresql":
                q = q.with_for_update()  # serialises writers of the same tracks' revenue
            known = {r.id for r in (await conn.execute(q)).all()}
            missing = [i for i in ids if i not in known]
            if missing:
                shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                raise NotFoundError(f"unknown content object(s): {shown}")
            rows = [
                {"object_id": f.object_id, "platform": f.platform, "period": f.period, "views": f.views,
                 "engagement": f.engagement, "revenue": float(f.revenue), "source": source, "updated_at": at}
                for f in last.values()
            ]  # fmt: skip
            for i in range(0, len(rows), CHUNK):
                ins = upsert(P).values(rows[i : i + CHUNK])
                await conn.execute(ins.on_conflict_do_update(
                    index_elements=["object_id", "platform", "period"],
                    set_={k: ins.excluded[k] for k in ("views", "engagement", "revenue", "source", "updated_at")},
                ))  # fmt: skip
            sums = select(P.c.object_id, func.sum(P.c.revenue).label("revenue")).where(P.c.object_id.in_(ids))
            for r in (await conn.execute(sums.group_by(P.c.object_id))).all():
                await conn.execute(
                    update(t.content_objects).where(c.id == r.object_id).values(revenue=float(r.revenue))
                )
            await conn.execute(insert(t.audit).values(
                at=at, actor=actor[:128], action="content.performance",
                subject=f"object/{ids[0]}" if len(ids) == 1 else f"objects/{len(ids)}",
                details={"source": source, "objects": len(ids), "figures": len(figures)},
            ))  # fmt: skip
        return len(figures)

    async def figures(self, object_id: str) -> list[PerformanceFigure]:
        q = select(P).where(P.c.object_id == object_id).order_by(P.c.platform, P.c.period)
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [PerformanceFigure(r.object_id, r.platform, r.period, int(r.views), int(r.engagement), float(r.revenue))
                for r in rows]  # fmt: skip

    async def revenue(self, object_id: str) -> float:
        c = t.content_objects.c
        async with self.db.connect() as conn:
            value = (await conn.execute(select(c.revenue).where(c.id == object_id))).scalar_one_or_none()
        return float(value or 0.0)

    async def totals(self, since: datetime) -> dict[tuple[str, str], PlatformTotals]:
        c = t.content_objects.c
        q = (
            select(c.persona, P.c.platform, func.sum(P.c.views), func.sum(P.c.engagement), func.sum(P.c.revenue),
                   func.count(func.distinct(P.c.object_id)))
            .join(t.content_objects, c.id == P.c.object_id)
            .where(c.created_at >= since, c.status != "quarantined")
            .group_by(c.persona, P.c.platform)
            .order_by(c.persona, P.c.platform)
        )  # fmt: skip
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).all()
        return {(str(r[0] or ""), str(r[1])): PlatformTotals(int(r[2] or 0), int(r[3] or 0), float(r[4] or 0.0), int(r[5]))
                for r in rows}  # fmt: skip
