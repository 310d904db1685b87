"""Plug tiering into the daemon (`empire run`): executor, periodic sweep, ingest routes, status.

`AREA` is built by `empire.agent.daemon.build_daemon` (see `empire.agent.areas`). Recovery of interrupted moves
runs once at start as a background task (before the first sweep can plan anything for the same
objects) and again at the start of every sweep.
"""

from __future__ import annotations

import logging

from empire.agent.api.spec import api_routes
from empire.agent.areas import AreaDeps, AreaHandle, AreaPlugin, PeriodicJob
from empire.agent.tiering.api import endpoints
from empire.agent.tiering.backends import build_backend
from empire.agent.tiering.executor import RetierExecutor
from empire.agent.tiering.metrics import TieringMetrics
from empire.agent.tiering.mover import Mover
from empire.agent.tiering.sweep import TieringSweep, refresh_usage
from empire.agent.types import Retier
from empire.errors import TemporaryError
from empire.policies.loading import LoadedPolicy
from empire.policies.storage import StoragePolicy
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal
from empire.state.publications import publications

__all__ = ["AREA", "build"]

logger = logging.getLogger(__name__)


def build(deps: AreaDeps) -> AreaHandle:
    def policy() -> StoragePolicy:
        return deps.policy().policy.storage

    storage = policy()
    settings = deps.settings
    backend = build_backend(storage, settings.data_dir, deps.secret_reader)
    metrics = deps.monitor.group(TieringMetrics)
    inventory = SqlInventory(deps.db)
    mover = Mover(SqlMoveJournal(deps.db), backend, storage, deps.clock, metrics=metrics, actor=settings.replica_id)

    def live() -> bool:
        return not deps.runner.dry_run

    sweep = TieringSweep(inventory, mover, lambda a, now: deps.runner.run(a, at=now), policy, metrics, live)

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

    def on_policy(loaded: LoadedPolicy) -> None:
        mover.set_policy(loaded.policy.storage)

    logger.info("tiering: %s, sweep every %s", backend, storage.sweep_every)
    return AreaHandle(
        jobs=[PeriodicJob("tiering-sweep", lambda p: p.storage.sweep_every, sweep)],
        routes=api_routes(endpoints(inventory, clock=deps.clock, policy=policy,
                                          publications=lambda oid: publications(deps.db, oid)), settings.http.max_body_bytes),
        status={"tiering": lambda: {"backend": repr(backend), "last_sweep": sweep.last.as_dict() if sweep.last else None}},
        executors={Retier: RetierExecutor(mover, inventory)},
        background=[recover, usage],
        metrics=(TieringMetrics,),
        offers={"storage_backend": backend},
        on_policy=on_policy,
        close=backend.aclose,
    )  # fmt: skip


AREA = AreaPlugin("tiering", build)
