"""Plug tiering into the daemon (`empire run`): executor, periodic sweep, ingest routes, status.

Called by `empire.agent.daemon.build_daemon` through `AREA_MODULES`. Recovery of interrupted moves
runs once at start as a background task (before the first sweep can plan anything for the same
objects) and again at the start of every sweep.
"""

from __future__ import annotations

import logging
from typing import Any

from empire.agent.tiering.api import routes
from empire.agent.tiering.backends import build_backend
from empire.agent.tiering.executor import RetierExecutor, TieringSweep, refresh_usage
from empire.agent.tiering.inventory import Inventory
from empire.agent.tiering.metrics import TieringMetrics
from empire.agent.tiering.mover import Mover
from empire.agent.types import Retier
from empire.errors import TemporaryError
from empire.policies.storage import StoragePolicy

__all__ = ["setup"]

logger = logging.getLogger(__name__)


def setup(daemon: Any) -> None:
    def policy() -> StoragePolicy:
        return daemon.policy().policy.storage

    storage = policy()
    backend = build_backend(storage, daemon.settings.data_dir, daemon.services.get("secret_reader"))
    metrics = daemon.monitor.group(TieringMetrics)
    inventory = Inventory(daemon.db)
    mover = Mover(daemon.db, backend, storage, daemon.clock, metrics=metrics, actor=daemon.settings.replica_id)
    daemon.runner.register(Retier, RetierExecutor(mover, inventory))

    def live() -> bool:
        return not daemon.runner.dry_run

    sweep = TieringSweep(inventory, mover, lambda a, now: daemon.runner.run(a, at=now), policy, metrics, live)
    daemon.jobs.add("tiering-sweep", storage.sweep_every, sweep)
    daemon.routes.extend(
        routes(inventory, token=daemon.settings.ingest_token, clock=daemon.clock,
               half_life=lambda: policy().access_half_life, max_body_bytes=daemon.settings.http.max_body_bytes)
    )  # fmt: skip
    daemon.context.status_sections["tiering"] = lambda: {
        "backend": repr(backend), "last_sweep": sweep.last.as_dict() if sweep.last else None,
    }  # fmt: skip

    async def recover() -> None:
        if not live():
            logger.info("tiering: dry run: interrupted moves are left for a live run to recover")
            return
        results = await mover.recover()
        if results:
            logger.warning("tiering: recovered %d interrupted moves at start", len(results))

    async def usage() -> None:  # the tier gauges from the start, not after the first sweep (1h by default)
        try:
            await refresh_usage(inventory, policy(), metrics)
        except TemporaryError as exc:
            logger.warning("tiering: cannot read the inventory's usage yet: %s", exc)

    daemon.background.append(recover)
    daemon.background.append(usage)
    daemon.closers.append(backend.aclose)
    daemon.services["storage_backend"] = backend
    if daemon.settings.ingest_token is None:
        logger.info("tiering: ingest endpoint refuses all calls (EMPIRE_INGEST_TOKEN unset)")
    logger.info("tiering: %s, sweep every %s", backend, storage.sweep_every)
