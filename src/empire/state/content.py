"""`SqlContentCatalog`: the pools' `ContentCatalog` port on the state DB (table `content_objects`).

A published track becomes a row tiering then manages; the near-duplicate check reads a persona's
newest active titles and prompts back; the planner's `returns` spending reads the personas' tracks
and their revenue to date (the `revenue` column the ingest endpoint and CSV import keep current).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from empire.agent.pools.publish import NewContent
from empire.agent.pools.revenue import PublishedTrack
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlContentCatalog"]


class SqlContentCatalog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, item: NewContent) -> None:
        m = item.meta
        row = {
            "id": item.id, "size": item.size, "checksum": item.checksum, "tier": item.tier,
            "location": item.location, "persona": m.persona, "title": m.title, "status": m.status,
            "created_at": m.created_at, "tier_since": m.created_at, "access_score": 0.0, "revenue": 0.0,
            "meta": m.extra,
        }  # fmt: skip
        ins = (pg_insert if self.db.dialect == "postgresql" else sqlite_insert)(t.content_objects).values(**row)
        async with self.db.begin() as conn:
            await conn.execute(ins.on_conflict_do_nothing(index_elements=["id"]))

    async def recent(self, persona: str, limit: int) -> list[tuple[str | None, dict[str, Any]]]:
        c = t.content_objects.c
        q = (
            select(c.title, c.meta)
            .where(c.persona == persona, c.status == "active")
            .order_by(c.created_at.desc())
            .limit(limit)
        )
        async with self.db.connect() as conn:
            return [(r.title, dict(r.meta or {})) for r in (await conn.execute(q)).all()]

    async def published_since(self, since: datetime, personas: Sequence[str]) -> list[PublishedTrack]:
        """Quarantined tracks were never published: they earn nothing and are no evidence."""
        if not personas:
            return []
        c = t.content_objects.c
        q = select(c.persona, c.created_at, c.revenue, c.meta).where(
            c.created_at >= since, c.status != "quarantined", c.persona.in_(list(personas))
        )
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            meta = dict(r.meta or {})
            provider = meta.get("provider")
            out.append(PublishedTrack(str(r.persona), str(meta.get("genre") or ""),
                                      str(provider) if provider else None, r.created_at, float(r.revenue)))  # fmt: skip
        return out
