"""Plug scheduled backups into the daemon (`empire run`): executors, the periodic job, status, metrics.

`AREA` is built by `empire.agent.daemon.build_daemon` (see `empire.agent.areas`), after tiering:
backups are written through the storage backend tiering offers (`offered["storage_backend"]`), so
they land where content does (a directory per tier, or S3 prefixes) and monthly archives can go to
the archive tier. Without that backend (tiering failed to build) this area fails too and the
daemon runs degraded, saying so in `/status` and `/readyz`. The snapshot is taken by
`empire.state.backup.create_backup` (the same code as `empire db backup`) into
`<data dir>/backups/.scratch/`, then copied into the tier. The `backup` job's interval follows
`backup.check_every` on every reload (the daemon reschedules it).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from empire.agent.areas import AreaDeps, AreaHandle, AreaPlugin, PeriodicJob
from empire.agent.backup.executor import BackupExecutor, PruneExecutor, Snapshots
from empire.agent.backup.job import BackupJob
from empire.agent.backup.manifest import Manifest
from empire.agent.backup.metrics import BackupMetrics
from empire.agent.types import BackupDb, PruneBackup
from empire.errors import ConfigError, TemporaryError
from empire.policies.backup import BackupPolicy
from empire.policies.durations import format_duration
from empire.state.backup import create_backup
from empire.state.backups import SqlBackupCatalog

__all__ = ["AREA", "build"]

logger = logging.getLogger(__name__)
FIRST_CHECK = timedelta(seconds=30)  # after start: leadership settled, tiering recovery under way


def build(deps: AreaDeps) -> AreaHandle:
    def policy() -> BackupPolicy:
        return deps.policy().policy.backup

    backend = deps.offered.get("storage_backend")
    if backend is None:
        raise ConfigError("no storage backend (the tiering area did not build): no scheduled backups")
    url = deps.settings.database_url_value
    catalog = SqlBackupCatalog(deps.db)

    async def take(out: Path, now: datetime, labels: dict[str, str]) -> Manifest:
        return await create_backup(url, out, now, labels=labels)

    snapshots = Snapshots(take, deps.settings.data_dir / "backups" / ".scratch")
    job = BackupJob(catalog, snapshots, lambda a, now: deps.runner.run(a, at=now), policy,
                    lambda: deps.policy().policy.storage, "sqlite" if url.startswith("sqlite") else "postgresql",
                    deps.clock.now(), deps.monitor.group(BackupMetrics), deps.store.recent_actions)  # fmt: skip

    async def first_look() -> None:  # metrics and /status from the catalog at start, not after the first check
        try:
            await job.refresh(deps.clock.now())
        except TemporaryError as exc:
            logger.warning("backup: cannot read the backup catalog yet: %s", exc)

    def status() -> dict[str, Any]:
        return {"enabled": policy().enabled, "classes": {c: s.as_dict() for c, s in job.states.items()}}

    p = policy()
    logger.info("backup: %s", "off (policy backup.enabled: false)" if not p.enabled else
                ", ".join(f"{c} kept {format_duration(s.keep)}" for c, s in p.classes().items() if s.enabled)
                + f", checked every {format_duration(p.check_every)}")  # fmt: skip
    return AreaHandle(
        jobs=[PeriodicJob("backup", lambda pol: pol.backup.check_every, job, first_delay=FIRST_CHECK)],
        status={"backup": status},
        executors={
            BackupDb: BackupExecutor(backend, catalog, snapshots),
            PruneBackup: PruneExecutor(backend, catalog, deps.clock),
        },
        background=[first_look],
        metrics=(BackupMetrics,),
    )  # fmt: skip


AREA = AreaPlugin("backup", build)
