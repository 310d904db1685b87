"""Plug scheduled backups into the daemon (`empire run`): executors, the periodic job, status, metrics.

Called by `empire.agent.daemon.build_daemon` through `AREA_MODULES`, after tiering: backups are
written through the storage backend tiering offers (`daemon.services["storage_backend"]`), so
they land where content does (a directory per tier, or S3 prefixes) and monthly archives can go to
the archive tier. Without that backend (tiering failed to set up) there are no scheduled backups,
and the log says so. The snapshot is taken by `empire.state.backup.create_backup` (the same code
as `empire db backup`) into `<data dir>/backups/.scratch/`, then copied into the tier.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from empire.agent.backup.executor import BackupExecutor, PruneExecutor, Snapshots
from empire.agent.backup.job import BackupJob
from empire.agent.types import BackupDb, PruneBackup
from empire.errors import TemporaryError
from empire.policies.backup import BackupPolicy
from empire.policies.durations import format_duration
from empire.policies.loading import LoadedPolicy

__all__ = ["setup"]

logger = logging.getLogger(__name__)
FIRST_CHECK = timedelta(seconds=30)  # after start: leadership settled, tiering recovery under way


def setup(daemon: Any) -> None:
    from empire.state.backup import create_backup
    from empire.state.backups import SqlBackupCatalog

    def policy() -> BackupPolicy:
        return daemon.policy().policy.backup

    backend = daemon.services.get("storage_backend")
    if backend is None:
        logger.error("backup: no storage backend (the tiering area did not set up): no scheduled backups")
        return
    url = daemon.settings.database_url_value
    catalog = SqlBackupCatalog(daemon.db)

    async def take(out: Any, now: Any, labels: dict[str, str]) -> Any:
        return await create_backup(url, out, now, labels=labels)

    snapshots = Snapshots(take, daemon.settings.data_dir / "backups" / ".scratch")
    daemon.runner.register(BackupDb, BackupExecutor(backend, catalog, snapshots))
    daemon.runner.register(PruneBackup, PruneExecutor(backend, catalog, daemon.clock))
    job = BackupJob(catalog, snapshots, lambda a, now: daemon.runner.run(a, at=now), policy,
                    lambda: daemon.policy().policy.storage, "sqlite" if url.startswith("sqlite") else "postgresql",
                    daemon.clock.now(), daemon.monitor.backup, daemon.store.recent_actions)  # fmt: skip
    daemon.jobs.add("backup", policy().check_every, job, first_delay=FIRST_CHECK)
    daemon.context.status_sections["backup"] = lambda: {
        "enabled": policy().enabled, "classes": {c: s.as_dict() for c, s in job.states.items()},
    }  # fmt: skip
    interval = [policy().check_every]

    def on_policy(loaded: LoadedPolicy) -> None:
        every = loaded.policy.backup.check_every
        if every != interval[0]:
            interval[0] = every
            daemon.jobs.add("backup", every, job)

    async def first_look() -> None:  # metrics and /status from the catalog at start, not after the first check
        try:
            await job.refresh(daemon.clock.now())
        except TemporaryError as exc:
            logger.warning("backup: cannot read the backup catalog yet: %s", exc)

    daemon.policy_listeners.append(on_policy)
    daemon.background.append(first_look)
    p = policy()
    logger.info("backup: %s", "off (policy backup.enabled: false)" if not p.enabled else
                ", ".join(f"{c} kept {format_duration(s.keep)}" for c, s in p.classes().items() if s.enabled)
                + f", checked every {format_duration(p.check_every)}")  # fmt: skip
