"""`MemoryBackupCatalog`: the in-process twin of the SQL catalog (tests, and the contract suite)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from empire.agent.backup.planning import BackupEntry

__all__ = ["MemoryBackupCatalog"]


class MemoryBackupCatalog:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], BackupEntry] = {}

    async def add(self, entry: BackupEntry) -> bool:
        key = (entry.cls, entry.name)
        if key in self._rows:
            return False
        self._rows[key] = entry
        return True

    async def entries(self, include_deleted: bool = False) -> list[BackupEntry]:
        rows = sorted(self._rows.values(), key=lambda e: (e.created_at, e.cls, e.name))
        return [e for e in rows if include_deleted or e.deleted_at is None]

    async def latest(self) -> dict[str, BackupEntry]:
        return {e.cls: e for e in await self.entries()}

    async def mark_deleted(self, cls: str, name: str, at: datetime) -> bool:
        row = self._rows.get((cls, name))
        if row is None or row.deleted_at is not None:
            return False
        self._rows[(cls, name)] = dataclasses.replace(row, deleted_at=at)
        return True
