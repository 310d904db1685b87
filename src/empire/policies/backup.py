"""Scheduled backups of the state database: three retention classes, each written to a storage tier.

The recovery targets this serves: hourly snapshots kept 24 hours, daily backups kept 30 days,
monthly archives kept 7 years. A class is due once per calendar slot (UTC hour, day, month), so a
restart or a slow run never takes two in one slot, and a missed slot is visible as overdue.
Backups are written through the storage backend of `storage:` (a directory per tier, or S3 key
prefixes), under `backups/<class>/` in the class's tier: monthly archives to the coldest tier by
default. RPO 0 is not this: it comes from PostgreSQL's synchronous replication (see the README).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from empire.policies.common import Name, StrictModel
from empire.policies.durations import Duration, PositiveDuration, duration_range

__all__ = ["BACKUP_CLASSES", "BackupClass", "BackupPolicy"]

BACKUP_CLASSES = ("hourly", "daily", "monthly")
"""The retention classes, in order of their slot length (hour, day, month)."""


class BackupClass(StrictModel):
    """One retention class: taken once per slot, kept `keep`, in storage tier `tier`."""

    enabled: bool = Field(default=True, description="take backups of this class")
    keep: PositiveDuration = Field(description="delete a backup of this class this long after it was taken")
    tier: Name | None = Field(
        default=None,
        description="storage tier to write to (default: hot for hourly and daily, the last tier for monthly)",
    )


class BackupPolicy(StrictModel):
    """Scheduled, journaled backups of the state database (`empire db backup` on a schedule)."""

    enabled: bool = Field(
        default=False, description="take scheduled backups (the shipped policy turns them on; {} stays idle)"
    )
    hourly: BackupClass = Field(default_factory=lambda: BackupClass(keep=timedelta(hours=24)))
    daily: BackupClass = Field(default_factory=lambda: BackupClass(keep=timedelta(days=30)))
    monthly: BackupClass = Field(default_factory=lambda: BackupClass(keep=timedelta(days=2557)))
    check_every: Annotated[Duration, duration_range(timedelta(seconds=10), timedelta(hours=1))] = Field(
        default=timedelta(minutes=5), description="how often the daemon looks for a due backup (also the retry delay)"
    )
    overdue_after: PositiveDuration = Field(
        default=timedelta(minutes=30),
        description="alert when a slot (hour, day, month) is this far in without a backup",
    )

    def classes(self) -> dict[Literal["hourly", "daily", "monthly"], BackupClass]:
        return {"hourly": self.hourly, "daily": self.daily, "monthly": self.monthly}
