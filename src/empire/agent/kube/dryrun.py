"""`DryRunExecutor`: a pretend cluster for a daemon with no Kubernetes configured.

Why a pretend cluster rather than nothing: with no cluster the loop still decides and journals,
and an operator evaluating empire wants to see what it *would* do over time. The executor keeps
the replicas it "set" in memory (starting at each target's `min_replicas`, or at what an optional
real reader reports), so the next tick decides from the would-be state and the journal reads like
a real run; every action is journaled as `skipped` with reason `dry_run`, nothing is applied.
"""

from __future__ import annotations

from empire.agent.ports import WorkloadReader
from empire.agent.records import ActionRecord
from empire.agent.types import Action, Outcome, OutcomeStatus, ReadBack, Reason, ScaleTo, WorkloadState
from empire.policies.scaling import Target

__all__ = ["DryRunExecutor"]


class DryRunExecutor:
    def __init__(self, reader: WorkloadReader | None = None) -> None:
        self.reader = reader
        self.replicas: dict[str, int] = {}

    async def workload(self, target: Target) -> WorkloadState:
        if target.name in self.replicas:
            return WorkloadState(replicas=self.replicas[target.name], ready_replicas=self.replicas[target.name])
        if self.reader is not None:
            return await self.reader.workload(target)
        start = target.min_replicas
        return WorkloadState(replicas=start, ready_replicas=start)

    async def execute(self, action: Action) -> Outcome:
        if isinstance(action, ScaleTo):
            self.replicas[action.target] = action.replicas
            return Outcome(
                OutcomeStatus.skipped, Reason.dry_run, state={"replicas": action.replicas, "simulated": True}
            )
        return Outcome(OutcomeStatus.skipped, Reason.dry_run)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        return ReadBack(False, {}, "dry run: nothing was applied")

    async def aclose(self) -> None:
        return None
