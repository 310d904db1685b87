"""When scheduled backups are due, overdue and expired (pure: `now` is an argument)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.backup import planning
from empire.agent.backup.planning import BackupEntry
from empire.policies.backup import BackupClass, BackupPolicy
from empire.policies.errors import PolicyError
from empire.policies.schema import parse_policy
from empire.policies.storage import StoragePolicy

ON = BackupPolicy(enabled=True)
T = datetime(2026, 3, 1, 0, 4, tzinfo=UTC)  # four minutes into a new month, day and hour


def entry(cls: str, at: datetime, name: str | None = None) -> BackupEntry:
    name = name or f"empire-{at:%Y%m%dT%H%M%SZ}.sqlite3"
    return BackupEntry(cls, name, planning.slot(cls, at), "hot", planning.location(cls, name), 10, "sha256:x", at)


def test_slots_are_calendar_hours_days_and_months_in_utc() -> None:
    at = datetime(2026, 3, 17, 13, 59, 59, tzinfo=UTC)
    assert [planning.slot(c, at) for c in ("hourly", "daily", "monthly")] == ["2026031713", "20260317", "202603"]
    assert planning.slot_start("monthly", at) == datetime(2026, 3, 1, tzinfo=UTC)


def test_at_the_start_of_a_month_every_class_is_due_once() -> None:
    assert planning.due(ON, {}, T) == ["hourly", "daily", "monthly"]
    latest = {c: entry(c, T) for c in ("hourly", "daily", "monthly")}
    assert planning.due(ON, latest, T + timedelta(minutes=50)) == []  # a restart mid-slot takes nothing twice
    assert planning.due(ON, latest, T + timedelta(hours=1)) == ["hourly"]
    assert planning.due(ON, latest, T + timedelta(days=1)) == ["hourly", "daily"]


def test_nothing_is_due_when_off_or_a_class_is_disabled() -> None:
    assert planning.due(BackupPolicy(), {}, T) == []
    no_hourly = BackupPolicy(enabled=True, hourly=BackupClass(enabled=False, keep=timedelta(hours=24)))
    assert planning.due(no_hourly, {}, T) == ["daily", "monthly"]


def test_overdue_counts_from_the_slot_or_from_the_start_if_later() -> None:
    started = T - timedelta(days=3)
    assert planning.overdue(ON, {}, T, started) == []  # 4 minutes into the slot
    assert planning.overdue(ON, {}, T + timedelta(minutes=30), started) == ["hourly", "daily", "monthly"]
    late_start = T + timedelta(minutes=20)  # the daemon came up 20 minutes into the hour
    assert planning.overdue(ON, {}, T + timedelta(minutes=45), late_start) == []
    latest = {c: entry(c, T) for c in ("hourly", "daily", "monthly")}
    assert planning.overdue(ON, latest, T + timedelta(minutes=59), started) == []
    assert planning.overdue(ON, latest, T + timedelta(hours=1, minutes=31), started) == ["hourly"]


def test_expired_past_keep_oldest_first_never_the_newest_of_a_class() -> None:
    hourly = [entry("hourly", T + timedelta(hours=h)) for h in range(30)]
    now = T + timedelta(hours=29, minutes=5)
    gone = planning.expired(ON, hourly, now)
    assert [e.created_at for e in gone] == [T + timedelta(hours=h) for h in range(6)]  # 24 h kept
    # a daemon stopped for a year still keeps the last monthly archive until it made a new one
    old = [entry("monthly", T - timedelta(days=3000)), entry("monthly", T - timedelta(days=2600))]
    assert planning.expired(ON, old, T) == [old[0]]
    deleted = [BackupEntry(**{**old[0].__dict__, "deleted_at": T})]
    assert planning.expired(ON, deleted, T) == []


def test_tiers_default_to_hot_and_the_coldest_and_must_exist() -> None:
    storage = StoragePolicy()
    assert [planning.class_tier(ON, storage, c) for c in ("hourly", "daily", "monthly")] == ["hot", "hot", "archive"]
    with pytest.raises(PolicyError, match=r"backup\.monthly\.tier: unknown tier 'glacier'"):
        parse_policy({"backup": {"monthly": {"keep": "2557d", "tier": "glacier"}}})
    p = parse_policy({"backup": {"enabled": True, "daily": {"keep": "30d", "tier": "warm"}}})
    assert planning.class_tier(p.backup, p.storage, "daily") == "warm"
