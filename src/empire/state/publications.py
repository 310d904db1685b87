"""A track's publications, from the state DB: its publish jobs, one per platform.

Read by `empire content show` and `GET /v1/content/{id}` (the tiering area's endpoint: hence a
module of its own, importing nothing of the pools area).
"""

from __future__ import annotations

from sqlalchemy import select

from empire.state import tables as t
from empire.state.database import Database

__all__ = ["publications"]


async def publications(db: Database, object_id: str) -> list[dict[str, object]]:
    """A track's publish jobs, one per platform (key `pub/<object_id>/<platform>`): state, the
    platform's id for it (external_id), URL."""
    j = t.jobs.c
    q = (
        select(j.provider, j.state, j.result, j.last_error, j.finished_at, j.provider_job_id)
        .where(j.idempotency_key.startswith(f"pub/{object_id}/", autoescape=True))
        .order_by(j.provider)
    )
    async with db.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [
        {"platform": r.provider, "state": r.state, "external_id": r.provider_job_id,
         "url": ((r.result or {}).get("publication") or {}).get("url"),
         "at": r.finished_at.isoformat() if r.finished_at else None, **({"error": r.last_error} if r.last_error else {})}
        for r in rows
    ]  # fmt: skip
