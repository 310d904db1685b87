"""`SqlMoveJournal`: the tiering area's `MoveJournal` port on the state DB (tables `moves` and `content_objects`).

Every write is one transaction with a compare-and-set on the move's owner (`_own`), so a mover that
lost its move changes nothing; the pointer switch and the `switched` step share one transaction (see
`empire.agent.tiering.mover` for why the order of steps makes moves crash-safe).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update

from empire.agent.tiering.journal import UNFINISHED_STEPS, Move, MoveAborted, MoveLost, Skipped, Unfinished, skip_reason
from empire.agent.types import Reason
from empire.errors import NotFoundError
from empire.state import tables as t
from empire.state.database import Database
from empire.state.inventory import audit

__all__ = ["SqlMoveJournal"]


def _reason(value: str) -> Reason:
    try:
        return Reason(value)
    except ValueError:
        return Reason.manual


class SqlMoveJournal:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(
        self,
        object_id: str,
        to_tier: str,
        reason: Reason,
        from_tier: str | None,
        *,
        dst: str,
        tiers: Collection[str],
        owner: str,
        now: datetime,
        lease_until: datetime,
    ) -> Move | Skipped:
        c = t.content_objects.c
        async with self.db.begin() as conn:
            q = select(t.content_objects).where(c.id == object_id)
            if self.db.dialect == "postgresql":
                q = q.with_for_update()
            row = (await conn.execute(q)).first()
            if row is None:
                raise NotFoundError(f"no content object {object_id!r}")
            why = skip_reason(row.status, row.tier, to_tier, from_tier, tiers)
            if why is not None:
                return Skipped(row.tier, why)
            await conn.execute(update(t.content_objects).where(c.id == object_id).values(status="moving"))
            move_id = (
                await conn.execute(
                    insert(t.moves).values(
                        object_id=object_id, from_tier=row.tier, to_tier=to_tier, src_location=row.location,
                        dst_location=dst, step="planned", reason=reason.value, created_at=now, updated_at=now,
                        owner=owner, lease_expires_at=lease_until,
                    ).returning(t.moves.c.id)
                )
            ).scalar_one()  # fmt: skip
        return Move(int(move_id), object_id, row.tier, to_tier, row.location, dst, reason, row.checksum, int(row.size))

    @staticmethod
    async def _own(conn: Any, move: Move, owner: str, now: datetime, lease_until: datetime, **values: Any) -> None:
        """Compare-and-set on the move's owner, renewing the lease; `MoveLost` when it is not ours."""
        values = {**values, "updated_at": now, "lease_expires_at": lease_until}
        mine = and_(t.moves.c.id == move.id, t.moves.c.owner == owner)
        result = await conn.execute(update(t.moves).where(mine).values(**values))
        if result.rowcount != 1:
            raise MoveLost()

    async def renew(self, move: Move, owner: str, now: datetime, lease_until: datetime, **values: Any) -> None:
        async with self.db.begin() as conn:
            await self._own(conn, move, owner, now, lease_until, **values)

    async def switch(self, move: Move, owner: str, now: datetime, lease_until: datetime) -> None:
        c = t.content_objects.c
        async with self.db.begin() as conn:
            await self._own(conn, move, owner, now, lease_until, step="switched")  # rolled back with the pointer
            result = await conn.execute(
                update(t.content_objects)
                .where(and_(c.id == move.object_id, c.status == "moving", c.tier == move.from_tier,
                            c.location == move.src))
                .values(tier=move.to_tier, location=move.dst, tier_since=now, status="active")
            )  # fmt: skip
            if result.rowcount != 1:
                raise MoveAborted("object changed during the move (pointer no longer on the source)")

    async def pointer(self, move: Move, owner: str, now: datetime, lease_until: datetime) -> tuple[str, str] | None:
        c = t.content_objects.c
        async with self.db.begin() as conn:
            await self._own(conn, move, owner, now, lease_until)
            row = (await conn.execute(select(c.tier, c.location).where(c.id == move.object_id))).first()
        return (row.tier, row.location) if row is not None else None

    async def aborted(
        self,
        move: Move,
        owner: str,
        now: datetime,
        lease_until: datetime,
        *,
        error: str,
        quarantine: bool,
        actor: str,
    ) -> None:
        c = t.content_objects.c
        async with self.db.begin() as conn:
            await self._own(conn, move, owner, now, lease_until, step="aborted", error=error)
            await conn.execute(
                update(t.content_objects)
                .where(and_(c.id == move.object_id, c.status == "moving"))
                .values(status="quarantined" if quarantine else "active")
            )
            if quarantine:
                await audit(conn, now, actor, "content.quarantined", f"object/{move.object_id}", error=error)

    async def take_over(
        self, move: Move, step: str, previous: str | None, owner: str, now: datetime, lease_until: datetime
    ) -> bool:
        m = t.moves.c
        same_owner = m.owner.is_(None) if previous is None else m.owner == previous
        async with self.db.begin() as conn:
            result = await conn.execute(
                update(t.moves).where(and_(m.id == move.id, m.step == step, same_owner))
                .values(owner=owner, lease_expires_at=lease_until, updated_at=now)
            )  # fmt: skip
        return result.rowcount == 1

    async def unfinished(self) -> list[Unfinished]:
        m, c = t.moves.c, t.content_objects.c
        q = (
            select(t.moves, c.checksum, c.size)
            .join(t.content_objects, c.id == m.object_id)
            .where(m.step.in_(UNFINISHED_STEPS))
            .order_by(m.id)
        )
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            move = Move(int(r.id), r.object_id, r.from_tier, r.to_tier, r.src_location, r.dst_location,
                        _reason(r.reason), r.checksum, int(r.size))  # fmt: skip
            out.append(Unfinished(move, r.step, r.owner, r.lease_expires_at))
        return out
