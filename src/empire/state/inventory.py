"""`SqlInventory`: the tiering area's `Inventory` port on the state DB (table `content_objects`).

Moves are selected in SQL (`tier_selection`: the inventory reaches millions of rows); every write is
audited in the same transaction (`audit`, which the mover uses too). See `empire.agent.tiering.inventory`
for what the inventory holds and the ingestion bounds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from empire.agent.tiering.inventory import (
    MAX_REVENUE,
    AccessEvent,
    ContentObject,
    RevenueFigure,
    TierUsage,
    decay_add,
    refuse_bad,
    valid_checksum,
)
from empire.agent.tiering.planner import MoveSummary, PlannedMove
from empire.errors import ConfigError, NotFoundError
from empire.policies.storage import StoragePolicy
from empire.state import tables as t
from empire.state.database import Database
from empire.state.tier_selection import candidates_query, reason_of, summary_query

__all__ = ["SqlInventory", "audit"]


def _obj(row: Any) -> ContentObject:
    return ContentObject(
        id=row.id, size=int(row.size), checksum=row.checksum, tier=row.tier, location=row.location,
        created_at=row.created_at, tier_since=row.tier_since, status=row.status, persona=row.persona,
        title=row.title, last_access_at=row.last_access_at, access_score=float(row.access_score),
        access_updated_at=row.access_updated_at, revenue=float(row.revenue), meta=dict(row.meta or {}),
    )  # fmt: skip


async def audit(conn: AsyncConnection, at: datetime, actor: str, action: str, subject: str, **details: Any) -> None:
    await conn.execute(
        insert(t.audit).values(at=at, actor=actor[:128], action=action, subject=subject[:256], details=details)
    )


class SqlInventory:
    """`Inventory` on the state DB (`content_objects`; SQLite and PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ objects
    async def register(self, obj: ContentObject, *, actor: str = "system") -> None:
        """Add an object; registering the same id again with the same checksum is a no-op."""
        if not valid_checksum(obj.checksum):
            raise ConfigError(f"object {obj.id}: checksum must be 'sha256:<64 hex digits>', got {obj.checksum!r}")
        async with self.db.begin() as conn:
            existing = (await conn.execute(select(t.content_objects).where(t.content_objects.c.id == obj.id))).first()
            if existing is not None:
                if existing.checksum != obj.checksum:
                    raise ConfigError(f"object {obj.id} exists with another checksum ({existing.checksum})")
                return
            values = {k: getattr(obj, k) for k in t.content_objects.c.keys()}  # noqa: SIM118 - Column collection
            await conn.execute(insert(t.content_objects).values(**values))
            await audit(conn, obj.created_at, actor, "content.register", f"object/{obj.id}",
                        tier=obj.tier, size=obj.size)  # fmt: skip

    async def get(self, object_id: str) -> ContentObject:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(t.content_objects).where(t.content_objects.c.id == object_id))).first()
        if row is None:
            raise NotFoundError(f"no content object {object_id!r}")
        return _obj(row)

    async def missing(self, ids: set[str] | list[str]) -> list[str]:
        """The ids (sorted) that are not in the inventory."""
        wanted = sorted(set(ids))
        found: set[str] = set()
        async with self.db.connect() as conn:
            for i in range(0, len(wanted), 500):
                q = select(t.content_objects.c.id).where(t.content_objects.c.id.in_(wanted[i : i + 500]))
                found.update((await conn.execute(q)).scalars())
        return [i for i in wanted if i not in found]

    async def all(self, limit: int = 10_000) -> list[ContentObject]:
        q = select(t.content_objects).order_by(t.content_objects.c.id).limit(limit)
        async with self.db.connect() as conn:
            return [_obj(r) for r in (await conn.execute(q)).all()]

    async def page(self, after: str = "", limit: int = 1000) -> list[ContentObject]:
        c = t.content_objects.c
        q = select(t.content_objects).where(c.id > after).order_by(c.id).limit(limit)
        async with self.db.connect() as conn:
            return [_obj(r) for r in (await conn.execute(q)).all()]

    async def sample(self, n: int) -> list[ContentObject]:
        q = select(t.content_objects).order_by(func.random()).limit(n)  # the database's own random()
        async with self.db.connect() as conn:
            return sorted((_obj(r) for r in (await conn.execute(q)).all()), key=lambda o: o.id)

    async def relocate(self, object_id: str, tier: str, at: datetime, *, actor: str, note: str) -> None:
        c = t.content_objects.c
        async with self.db.begin() as conn:
            row = (await conn.execute(select(c.tier).where(c.id == object_id))).first()
            if row is None:
                raise NotFoundError(f"no content object {object_id!r}")
            await conn.execute(update(t.content_objects).where(c.id == object_id)
                               .values(tier=tier, tier_since=at, status="active"))  # fmt: skip
            await audit(conn, at, actor, "content.relocate", f"object/{object_id}", old=row.tier, new=tier,
                        note=note)  # fmt: skip

    async def set_status(self, object_id: str, status: str, at: datetime, *, actor: str, note: str = "") -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                update(t.content_objects).where(t.content_objects.c.id == object_id).values(status=status)
            )
            await audit(conn, at, actor, f"content.{status}", f"object/{object_id}", note=note)

    async def accept_checksum(self, object_id: str, checksum: str, at: datetime, *, actor: str) -> None:
        """Record the stored bytes as they are now (an intended change) and make the object active."""
        if not valid_checksum(checksum):
            raise ConfigError(f"invalid checksum {checksum!r}")
        c = t.content_objects.c
        async with self.db.begin() as conn:
            row = (await conn.execute(select(c.checksum, c.status).where(c.id == object_id))).first()
            if row is None:
                raise NotFoundError(f"no content object {object_id!r}")
            if row.status == "moving":
                raise ConfigError(f"{object_id} is being moved")
            await conn.execute(update(t.content_objects).where(c.id == object_id)
                               .values(checksum=checksum, status="active"))  # fmt: skip
            await audit(conn, at, actor, "content.accept_checksum", f"object/{object_id}",
                        old=row.checksum, new=checksum)  # fmt: skip

    # ------------------------------------------------------------------ ingestion
    async def record_access(self, events: list[AccessEvent], half_life: timedelta, *, actor: str, at: datetime) -> int:
        """Fold access events into the decayed scores, all or nothing. Unknown ids: NotFoundError."""
        if not events:
            return 0
        refuse_bad(events, at)
        ids = sorted({e.object_id for e in events})
        async with self.db.begin() as conn:
            q = select(
                t.content_objects.c.id, t.content_objects.c.access_score, t.content_objects.c.access_updated_at,
                t.content_objects.c.last_access_at,
            ).where(t.content_objects.c.id.in_(ids))  # fmt: skip
            if self.db.dialect == "postgresql":
                q = q.with_for_update()
            rows = {r.id: r for r in (await conn.execute(q)).all()}
            missing = [i for i in ids if i not in rows]
            if missing:
                shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                raise NotFoundError(f"unknown content object(s): {shown}")
            state = {i: (float(r.access_score), r.access_updated_at, r.last_access_at) for i, r in rows.items()}
            for e in sorted(events, key=lambda e: e.at):
                score, stamp, last = state[e.object_id]
                score, stamp = decay_add(score, stamp, e.at, e.count, half_life)
                state[e.object_id] = (score, stamp, e.at if last is None or e.at > last else last)
            for oid, (score, stamp, last) in state.items():
                await conn.execute(
                    update(t.content_objects).where(t.content_objects.c.id == oid)
                    .values(access_score=score, access_updated_at=stamp, last_access_at=last)
                )  # fmt: skip
            total = sum(e.count for e in events)
            await audit(conn, at, actor, "content.access", f"object/{ids[0]}" if len(ids) == 1 else f"objects/{len(ids)}",
                        objects=len(ids), accesses=total, ids=ids[:50])  # fmt: skip
        return len(ids)

    async def record_revenue(self, figures: list[RevenueFigure], *, actor: str, at: datetime) -> int:
        """Set (revenue to date) or add revenue, all or nothing. Unknown ids: NotFoundError; a
        total that would pass MAX_REVENUE in size: ConfigError (nothing is written either way)."""
        if not figures:
            return 0
        refuse_bad(figures, at)
        ids = sorted({f.object_id for f in figures})
        c = t.content_objects.c
        async with self.db.begin() as conn:
            q = select(c.id, c.revenue).where(c.id.in_(ids))
            if self.db.dialect == "postgresql":
                q = q.with_for_update()
            totals = {r.id: float(r.revenue) for r in (await conn.execute(q)).all()}
            missing = [i for i in ids if i not in totals]
            if missing:
                shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                raise NotFoundError(f"unknown content object(s): {shown}")
            for f in figures:
                totals[f.object_id] = totals[f.object_id] + f.amount if f.mode == "add" else f.amount
                if not abs(totals[f.object_id]) <= MAX_REVENUE:
                    raise ConfigError(f"revenue of {f.object_id} would reach {totals[f.object_id]:g}, "
                                      f"more than {MAX_REVENUE:,.0f} in size")  # fmt: skip
            for oid, value in totals.items():
                await conn.execute(update(t.content_objects).where(c.id == oid).values(revenue=value))
            await audit(conn, at, actor, "content.revenue", f"object/{ids[0]}" if len(ids) == 1 else f"objects/{len(ids)}",
                        objects=len(ids), figures=[[f.object_id, f.amount, f.mode] for f in figures[:50]])  # fmt: skip
        return len(ids)

    # ------------------------------------------------------------------ planning and status
    async def plan(self, policy: StoragePolicy, now: datetime, limit: int) -> list[PlannedMove]:
        """The best-paying moves, selected in SQL."""
        q = candidates_query(policy, now, self.db.dialect, limit)
        months = policy.horizon.total_seconds() / 86400 / 30
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            PlannedMove(
                object_id=r.id,
                size=int(r.size),
                from_tier=r.from_tier,
                to_tier=r.to_tier,
                reason=reason_of(r.direction),
                monthly_saving=float(r.monthly_saving),
                horizon_saving=float(r.monthly_saving) * months,
                move_cost=float(r.move_cost),
            )
            for r in rows
        ]

    async def plan_summary(self, policy: StoragePolicy, now: datetime) -> list[MoveSummary]:
        async with self.db.connect() as conn:
            rows = (await conn.execute(summary_query(policy, now, self.db.dialect))).all()
        return [
            MoveSummary(r.from_tier, r.to_tier, int(r.objects), int(r.bytes or 0), float(r.monthly_saving or 0))
            for r in rows
        ]

    async def usage(self) -> list[TierUsage]:
        c = t.content_objects.c
        q = select(
            c.tier, func.count().label("objects"), func.coalesce(func.sum(c.size), 0).label("bytes"),
            func.sum(case((c.status == "moving", 1), else_=0)).label("moving"),
            func.sum(case((c.status == "quarantined", 1), else_=0)).label("quarantined"),
        ).group_by(c.tier).order_by(c.tier)  # fmt: skip
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            TierUsage(r.tier, int(r.objects), int(r.bytes), int(r.moving or 0), int(r.quarantined or 0)) for r in rows
        ]
