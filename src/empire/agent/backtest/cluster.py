"""`SimulatedCluster`: the backtest's Kubernetes, and its books.

The cluster model is fixed by the issue so that figures compare across tools:

* each *ready* replica serves `capacity` requests per minute;
* a replica is ready `startup_delay` after it is requested; removal is immediate (the newest,
  not-yet-ready replicas go first, as a ReplicaSet deletes pending pods before running ones);
* a minute is under-provisioned when its demand exceeds ready replicas x capacity;
* minutes whose trace status is not `ok` are not counted at all (neither demand nor cost).

It is the loop's `WorkloadReader` (spec replicas, ready replicas) and its `ScaleTo` executor, so
the real `ControlLoop` drives it exactly as it drives the Kubernetes scaler. `Books` accumulates,
per counted minute: under-provisioned minutes, demand not served (requests above ready capacity),
replica-minutes of *requested* replicas (a starting pod is paid for too) and applied scaling actions.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from empire.agent.ports import Clock
from empire.agent.records import ActionRecord
from empire.agent.types import Action, Outcome, OutcomeStatus, ReadBack, Reason, ScaleTo, WorkloadState
from empire.policies.scaling import Target

__all__ = ["Books", "SimulatedCluster"]


@dataclass
class Books:
    """Running totals of one policy over the counted (`ok`) minutes, plus per-minute traces for plots."""

    capacity: float
    minutes: int = 0
    under_minutes: int = 0
    unserved: float = 0.0
    replica_minutes: int = 0
    replica_minutes_all: int = 0  # every minute, counted or not (the trace's gaps and outages too)
    actions: int = 0
    requested: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)

    def count(self, demand: float, ok: bool, requested: int, ready: int) -> None:
        self.requested.append(requested)
        self.ready.append(ready)
        self.replica_minutes_all += requested
        if not ok:
            return
        self.minutes += 1
        self.replica_minutes += requested
        short = demand - ready * self.capacity
        if short > 1e-9:
            self.under_minutes += 1
            self.unserved += short

    def summary(self) -> dict[str, float | int]:
        req = np.asarray(self.requested) if self.requested else np.zeros(1)
        return {
            "under_provisioned_minutes": self.under_minutes,
            "unserved_demand": round(self.unserved, 1),
            "replica_hours": round(self.replica_minutes / 60, 1),
            "replica_hours_all_minutes": round(self.replica_minutes_all / 60, 1),
            "scaling_actions": self.actions,
            "counted_minutes": self.minutes,
            "mean_replicas": round(float(req.mean()), 2),
            "max_replicas": int(req.max()),
        }


class SimulatedCluster:
    """One simulated workload: pods with the instant they become ready (sorted)."""

    def __init__(self, clock: Clock, startup_delay: timedelta, replicas: int = 1, books: Books | None = None) -> None:
        self.clock = clock
        self.startup_delay = startup_delay
        self._ready_at: list[datetime] = [clock.now()] * replicas  # the run starts in steady state
        self.books = books

    @property
    def replicas(self) -> int:
        return len(self._ready_at)

    def ready(self, now: datetime | None = None) -> int:
        return bisect.bisect_right(self._ready_at, now or self.clock.now())

    def scale(self, replicas: int) -> bool:
        """Set the requested replicas at `clock.now()`; True when that changed anything."""
        current = len(self._ready_at)
        if replicas > current:
            self._ready_at.extend([self.clock.now() + self.startup_delay] * (replicas - current))
        elif replicas < current:
            del self._ready_at[replicas:]  # the last requested (not ready yet, if any) go first
        else:
            return False
        if self.books is not None:
            self.books.actions += 1
        return True

    # -- WorkloadReader ----------------------------------------------------------------------------
    async def workload(self, target: Target) -> WorkloadState:
        return WorkloadState(replicas=self.replicas, ready_replicas=self.ready())

    # -- Executor ----------------------------------------------------------------------------------
    async def execute(self, action: Action) -> Outcome:
        if not isinstance(action, ScaleTo):
            return Outcome(OutcomeStatus.skipped, Reason.no_change)
        changed = self.scale(action.replicas)
        status = OutcomeStatus.applied if changed else OutcomeStatus.unchanged
        return Outcome(status, None if changed else Reason.no_change, state={"replicas": self.replicas})

    async def read_back(self, record: ActionRecord) -> ReadBack:
        wanted = int(record.params.get("replicas", -1))
        return ReadBack(self.replicas == wanted, {"replicas": self.replicas})
