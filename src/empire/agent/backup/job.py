"""The periodic backup job: take the backups that are due, prune the expired, say how it went.

Every `backup.check_every` (5 minutes) on the leader: each class whose slot has no backup yet gets
a `BackupDb` action through the journaling runner (intent first, so a kill -9 mid-backup is read
back at the next start), then each expired backup a `PruneBackup` action. Afterwards the metrics
(last success, size, duration, count kept, overdue) and two alerts per class follow what happened:
`BackupFailed` (warning) while the last attempt of a class failed, `BackupOverdue` (critical) while
a slot is `overdue_after` old without a backup. Only changes become `Alert` actions, plus one
evaluation after start (a resolve that finds nothing firing changes nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from empire.agent.backup import planning
from empire.agent.backup.executor import Snapshots
from empire.agent.backup.ports import BackupCatalog
from empire.agent.types import AREA_LABEL, Action, Alert, BackupDb, Outcome, OutcomeStatus, PruneBackup, Reason
from empire.policies.backup import BACKUP_CLASSES, BackupPolicy
from empire.policies.storage import StoragePolicy

__all__ = ["BackupJob", "ClassState"]

logger = logging.getLogger(__name__)

Run = Callable[[Action, datetime], Awaitable[Outcome]]


@dataclass
class ClassState:
    """What `/status` shows per class."""

    last: planning.BackupEntry | None = None
    last_error: str | None = None
    overdue: bool = False
    kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        e = self.last
        return {
            "last": None if e is None else {"name": e.name, "at": e.created_at.isoformat(), "size": e.size,
                                            "tier": e.tier, "location": e.location},
            "last_error": self.last_error, "overdue": self.overdue, "kept": self.kept,
        }  # fmt: skip


@dataclass
class BackupJob:
    catalog: BackupCatalog
    snapshots: Snapshots
    run: Run
    policy: Callable[[], BackupPolicy]
    storage: Callable[[], StoragePolicy]
    dialect: str
    started: datetime
    metrics: Any
    journal: Callable[..., Awaitable[list[Any]]]  # StateStore.recent_actions: the alerts' state after a restart
    states: dict[str, ClassState] = field(default_factory=lambda: {c: ClassState() for c in BACKUP_CLASSES})
    _alerting: dict[tuple[str, str], bool] = field(default_factory=dict)  # (alertname, class) -> firing

    async def __call__(self, now: datetime) -> None:
        from empire.agent.backup.manifest import artifact_name

        policy = self.policy()
        if not policy.enabled:
            return
        latest = await self.catalog.latest()
        todo = planning.due(policy, latest, now)
        if todo:
            name = artifact_name(self.dialect, now)
            async with self.snapshots.session(now):
                for cls in todo:
                    action = BackupDb(cls=cls, name=name, slot=planning.slot(cls, now),
                                      tier=planning.class_tier(policy, self.storage(), cls),
                                      location=planning.location(cls, name), reasons=(Reason.backup_schedule,))  # fmt: skip
                    self._account(cls, await self.run(action, now))
        for e in planning.expired(policy, await self.catalog.entries(), now):
            await self.run(PruneBackup(cls=e.cls, name=e.name, tier=e.tier, location=e.location,
                                       reasons=(Reason.retention_expired,)), now)  # fmt: skip
        await self.refresh(now)

    def _account(self, cls: str, out: Outcome) -> None:
        self.metrics.runs.labels(cls, out.status.value).inc()
        if out.status == OutcomeStatus.failed:
            self.states[cls].last_error = out.error or (out.reason.value if out.reason else "failed")
            logger.warning("backup %s failed: %s", cls, self.states[cls].last_error)
        elif out.status == OutcomeStatus.applied:
            self.states[cls].last_error = None
            self.metrics.duration.labels(cls).set(float(out.state.get("seconds", 0.0)))

    async def refresh(self, now: datetime) -> None:
        """Metrics, `/status` and the two alerts from the catalog and the last attempts."""
        policy = self.policy()
        entries = await self.catalog.entries()
        latest = {e.cls: e for e in entries}
        late = set(planning.overdue(policy, latest, now, self.started)) if policy.enabled else set()
        for cls, st in self.states.items():
            st.last, st.overdue = latest.get(cls), cls in late
            st.kept = sum(1 for e in entries if e.cls == cls)
            self.metrics.kept.labels(cls).set(st.kept)
            self.metrics.overdue.labels(cls).set(1 if st.overdue else 0)
            if st.last is not None:
                self.metrics.last_success.labels(cls).set(st.last.created_at.timestamp())
                self.metrics.size.labels(cls).set(st.last.size)
            await self._alert(now, "BackupFailed", cls, st.last_error is not None and policy.enabled, "warning",
                              f"the {cls} backup of the state database failed: {st.last_error}")  # fmt: skip
            await self._alert(now, "BackupOverdue", cls, st.overdue, "critical",
                              f"no {cls} backup of the state database for this {planning.SLOT_WORD[cls]} yet "
                              f"(overdue after {policy.overdue_after})")  # fmt: skip

    async def _alert(self, now: datetime, name: str, cls: str, firing: bool, severity: str, summary: str) -> None:
        reason = Reason.backup_failed if name == "BackupFailed" else Reason.backup_overdue
        labels = {"alertname": name, "class": cls, "severity": severity, AREA_LABEL: "backup"}
        alert = Alert(rule=name, severity=severity, labels=labels, summary=summary if firing else "",
                      reasons=(reason,), resolved=not firing,
                      annotations={"summary": summary, "runbook": "empire db backup; see README, Backup and restore"})  # fmt: skip
        if (name, cls) not in self._alerting:  # after a start: what the journal last said about it
            last = await self.journal(alert.subject, limit=1)
            self._alerting[(name, cls)] = bool(last) and not last[0].params.get("resolved") and \
                last[0].state.value in ("applied", "skipped")  # fmt: skip
        if self._alerting[(name, cls)] == firing:
            return
        out = await self.run(alert, now)
        if out.status in (OutcomeStatus.applied, OutcomeStatus.unchanged, OutcomeStatus.duplicate):
            self._alerting[(name, cls)] = firing
