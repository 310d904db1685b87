"""When a scheduled backup is due, overdue, or expired. PURE: `now` and the catalog are arguments.

A class (hourly, daily, monthly) owns calendar slots in UTC: the hour, the day, the month. It is
*due* while its current slot has no successful backup (so a failed attempt is retried at the next
check, and a restart in the middle of a slot takes nothing twice). It is *overdue* when the slot is
`overdue_after` old (counted from when the daemon started, if later) and still has none: that is
the alert. A backup *expires* `keep` after it was taken, except the newest of its class, which is
never deleted by age alone (a daemon stopped for a month must not come back and delete the last
monthly archive before it has made a new one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from empire.policies.backup import BACKUP_CLASSES, BackupPolicy
from empire.policies.storage import StoragePolicy

__all__ = ["SLOT_WORD", "BackupEntry", "class_tier", "due", "expired", "location", "overdue", "slot", "slot_start"]

SLOT_WORD = {"hourly": "hour", "daily": "day", "monthly": "month"}


@dataclass(frozen=True)
class BackupEntry:
    """One backup in the catalog (a row of the `backups` table)."""

    cls: str  # hourly | daily | monthly
    name: str  # the artifact's name, e.g. empire-20260301T120000Z.sqlite3
    slot: str  # e.g. 2026030112 (hourly), 20260301 (daily), 202603 (monthly)
    tier: str
    location: str  # key in the tier: backups/<class>/<name>
    size: int
    checksum: str
    created_at: datetime
    deleted_at: datetime | None = None


def slot_start(cls: str, now: datetime) -> datetime:
    """The first instant of `now`'s slot of class `cls` (UTC)."""
    now = now.astimezone(UTC)
    if cls == "hourly":
        return now.replace(minute=0, second=0, microsecond=0)
    if cls == "daily":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if cls == "monthly":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown backup class {cls!r}")


def slot(cls: str, now: datetime) -> str:
    """The slot's name: `2026030112`, `20260301`, `202603`."""
    return slot_start(cls, now).strftime({"hourly": "%Y%m%d%H", "daily": "%Y%m%d", "monthly": "%Y%m"}[cls])


def location(cls: str, name: str) -> str:
    return f"backups/{cls}/{name}"


def class_tier(policy: BackupPolicy, storage: StoragePolicy, cls: str) -> str:
    """The tier a class writes to: its own, else the hottest (hourly, daily) or coldest (monthly)."""
    chosen = policy.classes()[cls].tier  # type: ignore[index]
    if chosen is not None:
        return chosen
    return storage.tiers[-1].name if cls == "monthly" else storage.tiers[0].name


def _enabled(policy: BackupPolicy) -> list[str]:
    if not policy.enabled:
        return []
    return [c for c, spec in policy.classes().items() if spec.enabled]


def due(policy: BackupPolicy, latest: Mapping[str, BackupEntry], now: datetime) -> list[str]:
    """Enabled classes whose current slot has no successful backup, in `BACKUP_CLASSES` order."""
    return [c for c in _enabled(policy) if (e := latest.get(c)) is None or e.slot != slot(c, now)]


def overdue(policy: BackupPolicy, latest: Mapping[str, BackupEntry], now: datetime, since: datetime) -> list[str]:
    """Due classes whose slot (or the daemon's start `since`, if later) began `overdue_after` ago."""
    return [c for c in due(policy, latest, now) if now - max(slot_start(c, now), since) >= policy.overdue_after]


def expired(policy: BackupPolicy, entries: Iterable[BackupEntry], now: datetime) -> list[BackupEntry]:
    """Live backups past their class's `keep`, oldest first; never the newest of a class."""
    live = sorted((e for e in entries if e.deleted_at is None), key=lambda e: (e.created_at, e.name))
    newest = {e.cls: e for e in live}
    keep = {c: spec.keep for c, spec in policy.classes().items()}
    return [e for e in live if e.cls in keep and e is not newest[e.cls] and now - e.created_at >= keep[e.cls]]


def order(classes: Iterable[str]) -> list[str]:
    return [c for c in BACKUP_CLASSES if c in set(classes)]
