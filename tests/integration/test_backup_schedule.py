"""Scheduled backups through the real journaling runner, storage backend and state DB, on a fake clock.

What an operator relies on: one backup per class and slot, written to the class's tier with a
manifest a restore accepts; expired ones deleted; a failed or overdue class raises its alert and
resolves it when a backup lands; a kill -9 mid-backup is settled by reading back, never guessed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import delete

from empire.agent.backup.executor import BackupExecutor, PruneExecutor, Snapshots
from empire.agent.backup.job import BackupJob
from empire.agent.backup.manifest import MANIFEST_SUFFIX, Manifest
from empire.agent.backup.metrics import BackupMetrics
from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.agent.records import ActionRecord, ActionState
from empire.agent.tiering.backends import LocalBackend
from empire.agent.types import Alert, BackupDb, Outcome, OutcomeStatus, PruneBackup, ReadBack, Reason
from empire.errors import TemporaryError
from empire.policies.backup import BackupClass, BackupPolicy
from empire.policies.storage import StoragePolicy
from empire.state import tables as t
from empire.state.backup import create_backup, database_contents, restore_backup
from empire.state.backups import SqlBackupCatalog
from empire.state.store import SqlStateStore

pytestmark = pytest.mark.anyio
T = datetime(2026, 3, 1, 0, 4, tzinfo=UTC)  # four minutes into a month, a day and an hour
TIERS = ("hot", "warm", "cold", "archive")


class AlertBook:
    """The alerting area's executor as the backup area sees it: what fires and resolves."""

    def __init__(self) -> None:
        self.firing: set[tuple[str, str]] = set()
        self.log: list[tuple[str, str, bool]] = []

    async def execute(self, action: Alert) -> Outcome:
        key = (action.labels["alertname"], action.labels["class"])
        self.log.append((*key, not action.resolved))
        changed = (key in self.firing) == action.resolved
        (self.firing.discard if action.resolved else self.firing.add)(key)
        return Outcome(OutcomeStatus.applied if changed else OutcomeStatus.unchanged)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        return ReadBack(True)


class Flaky(LocalBackend):
    """Writes to `broken` tiers fail as a full disk does."""

    broken: set[str] = set()

    async def put(self, tier, location, chunks):  # type: ignore[no-untyped-def]
        if tier in self.broken:
            raise TemporaryError(f"{tier}: no space left on device")
        return await super().put(tier, location, chunks)


def hourly_only(keep: timedelta = timedelta(hours=3)) -> BackupPolicy:
    off = BackupClass(enabled=False, keep=timedelta(days=1))
    return BackupPolicy(enabled=True, hourly=BackupClass(keep=keep), daily=off, monthly=off)


@pytest.fixture
async def world(database, tmp_path: Path):
    clock = FakeClock(T)
    monitor = Monitor(CollectorRegistry())
    backend = Flaky({t: tmp_path / "tiers" / t for t in TIERS})
    backend.broken = set()
    store = SqlStateStore(database)
    catalog = SqlBackupCatalog(database)
    alerts = AlertBook()

    async def take(out: Path, now: datetime, labels: dict[str, str]) -> Manifest:
        return await create_backup(database.url, out, now, labels=labels)

    snapshots = Snapshots(take, tmp_path / "scratch")
    runner = ActionRunner(store, {BackupDb: BackupExecutor(backend, catalog, snapshots),
                                  PruneBackup: PruneExecutor(backend, catalog, clock), Alert: alerts},
                          clock, monitor, replica="r1")  # fmt: skip
    box = SimpleNamespace(policy=BackupPolicy(enabled=True))
    job = BackupJob(catalog, snapshots, lambda a, now: runner.run(a, at=now), lambda: box.policy, StoragePolicy,
                    "sqlite" if database.url.startswith("sqlite") else "postgresql", T - timedelta(days=1),
                    monitor.group(BackupMetrics), store.recent_actions)  # fmt: skip
    return SimpleNamespace(clock=clock, monitor=monitor, backend=backend, store=store, catalog=catalog, job=job,
                           alerts=alerts, box=box, runner=runner, db=database, tmp=tmp_path)  # fmt: skip


def files(world, tier: str, cls: str) -> list[str]:
    d = world.backend.roots[tier] / "backups" / cls
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


async def test_every_class_once_per_slot_in_its_tier_with_a_manifest_a_restore_accepts(world, request) -> None:
    await world.job(world.clock.now())
    stamp = "empire-20260301T000400Z" + (".sqlite3" if world.db.dialect == "sqlite" else ".pgdump")
    assert files(world, "hot", "hourly") == files(world, "hot", "daily") == [stamp, stamp + MANIFEST_SUFFIX]
    assert files(world, "archive", "monthly") == [stamp, stamp + MANIFEST_SUFFIX]  # monthly: the coldest tier
    actions = await world.store.recent_actions(limit=50)
    assert sorted((a.kind, a.subject, a.reason, a.state) for a in actions if a.kind == "backup") == [
        ("backup", f"backup/{c}", "backup_schedule", ActionState.applied) for c in ("daily", "hourly", "monthly")
    ]

    path = world.backend.roots["archive"] / "backups" / "monthly" / stamp
    manifest = Manifest.from_json(path.with_name(stamp + MANIFEST_SUFFIX).read_text(), "test")
    assert manifest.labels == {"class": "monthly", "slot": "202603"}
    assert manifest.checksum == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    target = (f"sqlite+aiosqlite:///{world.tmp / 'restored.db'}" if world.db.dialect == "sqlite"
              else request.getfixturevalue("new_postgres_url")())  # fmt: skip
    await restore_backup(target, path, manifest)
    assert (await database_contents(target)).rows == manifest.rows

    reg = world.monitor.registry
    assert reg.get_sample_value("empire_backup_last_success_timestamp_seconds", {"class": "daily"}) == T.timestamp()
    assert reg.get_sample_value("empire_backup_size_bytes", {"class": "hourly"}) == manifest.size
    assert reg.get_sample_value("empire_backup_runs_total", {"class": "monthly", "result": "applied"}) == 1

    world.clock.advance(50 * 60)  # the same hour: nothing again
    await world.job(world.clock.now())
    assert len(files(world, "hot", "hourly")) == 2
    assert world.alerts.log == []  # nothing failed, nothing overdue: no alert ever fired


async def test_expired_backups_are_deleted_and_the_newest_kept(world) -> None:
    world.box.policy = hourly_only(keep=timedelta(hours=3))
    for _ in range(6):
        await world.job(world.clock.now())
        world.clock.advance(3600)
    kept = [n for n in files(world, "hot", "hourly") if not n.endswith(MANIFEST_SUFFIX)]
    assert [n[7:22] for n in kept] == [f"20260301T0{h}0400" for h in range(3, 6)]  # kept 3 h: 3 of them
    pruned = [a for a in await world.store.recent_actions(limit=100) if a.kind == "backup_prune"]
    assert sorted(a.params["name"][7:22] for a in pruned) == ["20260301T000400", "20260301T010400", "20260301T020400"]
    assert {a.state for a in pruned} == {ActionState.applied} and {a.reason for a in pruned} == {"retention_expired"}
    assert world.monitor.registry.get_sample_value("empire_backups", {"class": "hourly"}) == 3


async def test_a_failing_then_overdue_class_alerts_and_resolves_when_a_backup_lands(world) -> None:
    world.backend.broken = {"hot"}
    await world.job(world.clock.now())
    assert world.alerts.firing == {("BackupFailed", "hourly"), ("BackupFailed", "daily")}
    failed = [a for a in await world.store.recent_actions(limit=50) if a.kind == "backup"]
    assert {(a.subject, a.state) for a in failed} == {("backup/hourly", ActionState.failed),
                                                     ("backup/daily", ActionState.failed),
                                                     ("backup/monthly", ActionState.applied)}  # fmt: skip
    assert "no space left on device" in next(a.error for a in failed if a.subject == "backup/hourly")
    assert world.job.states["hourly"].as_dict()["last_error"].endswith("no space left on device")

    world.clock.advance(30 * 60)  # 34 minutes into the hour, still failing: overdue as well
    await world.job(world.clock.now())
    assert world.alerts.firing == {("BackupFailed", "hourly"), ("BackupFailed", "daily"),
                                   ("BackupOverdue", "hourly"), ("BackupOverdue", "daily")}  # fmt: skip
    assert world.monitor.registry.get_sample_value("empire_backup_overdue", {"class": "hourly"}) == 1
    fired_twice = [e for e in world.alerts.log if e == ("BackupFailed", "hourly", True)]
    assert len(fired_twice) == 1  # one alert per episode, not one per check

    world.backend.broken = set()
    world.clock.advance(5 * 60)
    await world.job(world.clock.now())
    assert world.alerts.firing == set()
    assert world.monitor.registry.get_sample_value("empire_backup_overdue", {"class": "hourly"}) == 0
    assert files(world, "hot", "hourly")


async def test_a_backup_killed_midway_is_read_back_not_guessed(world) -> None:
    """kill -9 after the intent: with no manifest the partial artifact is removed and the intent is
    `reconciled` (the empty slot is retried); with the manifest written it is `applied` and catalogued."""
    world.box.policy = hourly_only()
    executor = BackupExecutor(world.backend, world.catalog, world.job.snapshots)
    for name, done in (("empire-20260301T000000Z.sqlite3", False), ("empire-20260301T000100Z.sqlite3", True)):
        action = BackupDb(cls="hourly", name=name, slot="2026030100", tier="hot", location=f"backups/hourly/{name}",
                          reasons=(Reason.backup_schedule,))  # fmt: skip
        await world.store.write_intent(ActionRecord(
            idempotency_key=f"backup:{name}", kind="backup", subject=action.subject, params=action.params(),
            reason="backup_schedule", state=ActionState.intent, created_at=T, updated_at=T, replica="r0"))  # fmt: skip
        async with world.job.snapshots.session(T):
            if done:
                await executor.execute(action)
                async with world.db.begin() as conn:  # killed before the catalog row landed
                    await conn.execute(delete(t.backups))
            else:
                path, _ = await world.job.snapshots.get(name)
                target = world.backend.path("hot", action.location)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes()[:1000])  # the artifact half written, no manifest

    settled = {r.record.params["name"]: r.settled_as for r in await world.runner.reconcile()}
    assert settled == {"empire-20260301T000000Z.sqlite3": ActionState.reconciled,
                       "empire-20260301T000100Z.sqlite3": ActionState.applied}  # fmt: skip
    assert files(world, "hot", "hourly") == ["empire-20260301T000100Z.sqlite3",
                                             "empire-20260301T000100Z.sqlite3" + MANIFEST_SUFFIX]  # fmt: skip
    assert [e.name for e in await world.catalog.entries()] == ["empire-20260301T000100Z.sqlite3"]
    await world.job(world.clock.now())  # the slot is filled: nothing more to take
    assert len(files(world, "hot", "hourly")) == 2


async def test_dry_run_writes_nothing(world) -> None:
    world.runner.dry_run = True
    await world.job(world.clock.now())
    assert not (world.backend.roots["hot"] / "backups").exists()
    assert await world.catalog.entries() == []
