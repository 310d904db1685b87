"""`SqlHoldStore`: the pools' `HoldStore` port on the state DB (table `pool_holds`, SQLite and PostgreSQL).

One row per (kind, subject, source), kept after a release as that source's last word; each change
writes an `audit` row in the same transaction (see `empire.agent.pools.holds` for what holds mean).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from empire.agent.pools.holds import Hold, HoldKind, Holds, active_holds
from empire.agent.types import Reason
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlHoldStore"]

H = t.pool_holds


def _hold(row: Any) -> Hold:
    m = row._mapping
    return Hold(HoldKind(m["kind"]), m["subject"], m["source"], bool(m["held"]), m["reason"], m["actor"],
                m["updated_at"])  # fmt: skip


class SqlHoldStore:
    """`HoldStore` on the state DB (`pool_holds`); every change is audited in the same transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(
        self, kind: HoldKind, subject: str, source: str, held: bool, *, reason: str, actor: str, at: datetime
    ) -> bool:
        """Hold or release `subject` for `source`; True when that changed anything."""
        key = (H.c.kind == kind.value, H.c.subject == subject, H.c.source == source)
        async with self.db.begin() as conn:
            row = (await conn.execute(select(H.c.held).where(*key))).first()
            if row is not None and bool(row.held) == held:
                return False
            if row is None and not held:
                return False  # releasing what was never held: nothing to record
            values = {"held": held, "reason": reason, "actor": actor, "updated_at": at}
            ins = (pg_insert if self.db.dialect == "postgresql" else sqlite_insert)(H).values(
                kind=kind.value, subject=subject, source=source, **values
            )
            await conn.execute(ins.on_conflict_do_update(index_elements=["kind", "subject", "source"], set_=values))
            await conn.execute(insert(t.audit).values(
                at=at, actor=actor, action="pool_hold" if held else "pool_release", subject=f"{kind.value}/{subject}",
                details={"source": source, "reason": reason},
            ))  # fmt: skip
        return True

    async def release_all(self, kind: HoldKind, subject: str, *, actor: str, at: datetime) -> int:
        """Release `subject` for every source (the operator's override). Returns how many were held."""
        async with self.db.begin() as conn:
            res = await conn.execute(
                update(H)
                .where(H.c.kind == kind.value, H.c.subject == subject, H.c.held.is_(True))
                .values(held=False, reason=Reason.manual.value, actor=actor, updated_at=at)
            )
            n = int(res.rowcount or 0)
            if n:
                await conn.execute(insert(t.audit).values(
                    at=at, actor=actor, action="pool_release", subject=f"{kind.value}/{subject}",
                    details={"source": "all", "released": n},
                ))  # fmt: skip
        return n

    async def get(self, kind: HoldKind, subject: str, source: str) -> Hold | None:
        q = select(H).where(H.c.kind == kind.value, H.c.subject == subject, H.c.source == source)
        async with self.db.connect() as conn:
            row = (await conn.execute(q)).first()
        return _hold(row) if row else None

    async def list(self, held_only: bool = True) -> list[Hold]:
        q = select(H).order_by(H.c.kind, H.c.subject, H.c.source)
        if held_only:
            q = q.where(H.c.held.is_(True))
        async with self.db.connect() as conn:
            return [_hold(r) for r in (await conn.execute(q)).all()]

    async def active(self) -> Holds:
        return active_holds(await self.list(held_only=True))
