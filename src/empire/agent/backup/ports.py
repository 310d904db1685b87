"""The backup area's ports: the catalog of backups taken, and the snapshot of the state database.

`BackupCatalog` has an in-memory twin (`empire.agent.backup.memory`) and a SQL implementation
(`empire.state.backups`), checked by one contract suite (tests/contract/test_backup_catalog.py).
`Snapshotter` is how the area asks for a consistent copy of the database it runs on without
knowing which database that is (`empire.state.backup.create_backup` behind it).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol

from empire.agent.backup.manifest import Manifest
from empire.agent.backup.planning import BackupEntry

__all__ = ["BackupCatalog", "Snapshotter"]


class BackupCatalog(Protocol):
    """Which backups exist, per class: what retention prunes and what "last success" means."""

    async def add(self, entry: BackupEntry) -> bool:
        """Record a backup; False when (cls, name) is recorded already (a retried write)."""
        ...

    async def entries(self, include_deleted: bool = False) -> list[BackupEntry]:
        """Every backup, oldest first."""
        ...

    async def latest(self) -> dict[str, BackupEntry]:
        """The newest live backup of each class."""
        ...

    async def mark_deleted(self, cls: str, name: str, at: datetime) -> bool:
        """Retention deleted it; False when it was not live."""
        ...


class Snapshotter(Protocol):
    async def __call__(self, out: Path, now: datetime, labels: dict[str, str]) -> Manifest: ...
