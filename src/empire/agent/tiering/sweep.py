"""The tiering sweep: the periodic "decide" of tiering (a job of the tiering area, every `storage.sweep_every`).

It finishes any interrupted move, asks the inventory for the moves that pay (selected in SQL), and
hands each one as a `Retier` action to the journaling action runner, so a move is journaled with its
reason, counted, skipped in dry-run mode, and stopped on a replica that lost leadership, exactly like
a scaling action. The `RetierExecutor` (`executor.py`) then runs the crash-safe mover.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from empire.agent.tiering.inventory import Inventory
from empire.agent.tiering.metrics import TieringMetrics
from empire.agent.tiering.mover import Mover
from empire.agent.types import Outcome, Retier
from empire.policies.storage import StoragePolicy

__all__ = ["SweepReport", "TieringSweep", "refresh_usage"]

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    at: datetime
    planned: int = 0
    monthly_saving: float = 0.0
    results: dict[str, int] = field(default_factory=dict)  # outcome status -> count
    recovered: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "planned": self.planned, "monthly_saving": round(self.monthly_saving, 6),
                "results": dict(self.results), "recovered": self.recovered}  # fmt: skip


async def refresh_usage(inventory: Inventory, policy: StoragePolicy, metrics: TieringMetrics) -> None:
    """Set the per-tier bytes/objects/cost gauges from the inventory; a tier of the policy with nothing
    in it reads 0 (not "no data": a fresh install's dashboard shows its empty tiers)."""
    prices = {t.name: t.cost_per_gb_month for t in policy.tiers}
    for name in prices:
        for gauge in (metrics.tier_bytes, metrics.tier_objects, metrics.tier_monthly_cost):
            gauge.labels(name).set(0)
    for u in await inventory.usage():
        metrics.tier_bytes.labels(u.tier).set(u.bytes)
        metrics.tier_objects.labels(u.tier).set(u.objects)
        metrics.tier_monthly_cost.labels(u.tier).set(u.bytes / 1024**3 * prices.get(u.tier, 0.0))


class TieringSweep:
    """`async def sweep(now)` for the periodic-job registry.

    `run_action(action, now)` is the journaling runner (`ActionRunner.run(action, at=now)`);
    `policy()` returns the storage policy in force (it may be reloaded between sweeps);
    `recover()` says whether to finish interrupted moves first: not in dry-run mode, which
    touches no file (recovery copies, switches and deletes like a move)."""

    def __init__(
        self,
        inventory: Inventory,
        mover: Mover,
        run_action: Callable[[Retier, datetime], Awaitable[Outcome]],
        policy: Callable[[], StoragePolicy],
        metrics: TieringMetrics | None = None,
        recover: Callable[[], bool] = lambda: True,
    ) -> None:
        self.inventory = inventory
        self.recover = recover
        self.mover = mover
        self.run_action = run_action
        self.policy = policy
        self.metrics = metrics
        self.last: SweepReport | None = None

    async def __call__(self, now: datetime) -> SweepReport:
        policy = self.policy()
        if policy is not self.mover.policy:
            self.mover.set_policy(policy)
        report = SweepReport(at=now)
        if self.recover():
            report.recovered = len(await self.mover.recover())
        planned = await self.inventory.plan(policy, now, policy.max_moves_per_sweep)
        report.planned = len(planned)
        report.monthly_saving = sum(p.monthly_saving for p in planned)
        if self.metrics is not None:
            self.metrics.planned_saving.set(report.monthly_saving)
        limiter = anyio.CapacityLimiter(policy.max_concurrent_moves)

        async def one(action: Retier) -> None:
            async with limiter:
                out = await self.run_action(action, now)
            report.results[out.status.value] = report.results.get(out.status.value, 0) + 1

        async with anyio.create_task_group() as tg:
            for p in planned:
                tg.start_soon(one, p.to_action())
        if self.metrics is not None:
            await refresh_usage(self.inventory, policy, self.metrics)
        logger.info("tiering sweep: %d moves planned (%.4f/month saving): %s", report.planned,
                    report.monthly_saving, report.results or "nothing to do")  # fmt: skip
        self.last = report
        return report
