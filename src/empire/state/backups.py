"""`SqlBackupCatalog`: the backup area's `BackupCatalog` port on the state DB (table `backups`).

Why the catalog lives in the database it backs up: retention must know every backup without
listing a tier (an S3 tier may hold a million content objects), and "last success" must survive
a restart. A backup restored from does not list the backups taken after it; those are left where
they are (the README's runbook says so) rather than guessed at.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from empire.agent.backup.planning import BackupEntry
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlBackupCatalog"]

B = t.backups


def _entry(row: Any) -> BackupEntry:
    m = row._mapping
    return BackupEntry(cls=m["class"], name=m["name"], slot=m["slot"], tier=m["tier"], location=m["location"],
                       size=int(m["size"]), checksum=m["checksum"], created_at=m["created_at"],
                       deleted_at=m["deleted_at"])  # fmt: skip


class SqlBackupCatalog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, entry: BackupEntry) -> bool:
        values = {"class": entry.cls, "name": entry.name, "slot": entry.slot, "tier": entry.tier,
                  "location": entry.location, "size": entry.size, "checksum": entry.checksum,
                  "created_at": entry.created_at, "deleted_at": entry.deleted_at}  # fmt: skip
        try:
            async with self.db.begin() as conn:
                await conn.execute(insert(B).values(**values))
        except IntegrityError:
            return False
        return True

    async def entries(self, include_deleted: bool = False) -> list[BackupEntry]:
        q = select(B).order_by(B.c.created_at, B.c["class"], B.c.name)
        if not include_deleted:
            q = q.where(B.c.deleted_at.is_(None))
        async with self.db.connect() as conn:
            return [_entry(r) for r in (await conn.execute(q)).all()]

    async def latest(self) -> dict[str, BackupEntry]:
        return {e.cls: e for e in await self.entries()}

    async def mark_deleted(self, cls: str, name: str, at: datetime) -> bool:
        async with self.db.begin() as conn:
            done = await conn.execute(
                update(B).where(and_(B.c["class"] == cls, B.c.name == name, B.c.deleted_at.is_(None)))
                .values(deleted_at=at)
            )  # fmt: skip
        return bool(done.rowcount)
