"""The world around a simulated daemon: a replayed demand trace and one simulated cluster per target.

Why the backtest's pieces: the cluster model (`SimulatedCluster`: a replica is ready
`startup_delay` after it is requested, each ready replica serves `capacity` requests per minute,
`Books` counts under-provisioned minutes) and the trace reader (`load_trace`, any
`timestamp,value[,status]` CSV as requests per minute) are the ones the backtest's figures are
measured with, so what `empire run --simulate` shows is what `empire backtest` counts.

The trace drives every target's signals through one capacity model (`TargetModel`): the trace's
99.5th percentile asks for `peak_share` of the target's max_replicas at utilization `UTILIZATION`.
`need = demand / capacity` is the replicas' worth of work in a minute; then

* a `total` signal (a queue, requests/s) reads `need / UTILIZATION * target`: what the agent
  cannot change (desired = need / UTILIZATION);
* an `average` signal (CPU, memory, latency) reads `target * u / UTILIZATION` with
  `u = min(1, need / ready)`: the utilization of the replicas that are ready, so it answers to
  what the agent did (and saturates, as a CPU does, when too few replicas are ready).

Either way a right-sized target sits at its signal's target value. A minute the trace did not
record is a failed scrape (the sample is missing); a minute whose status is not `ok` (the NASA
trace's outage) is observed but not counted in the books. The simulated time maps onto the
trace by a whole number of weeks (`offset`), so its days and weekdays stay where they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from empire.agent.backtest.cluster import Books, SimulatedCluster
from empire.agent.backtest.trace import DemandTrace
from empire.agent.ports import Clock
from empire.agent.records import ActionRecord
from empire.agent.types import Action, Outcome, OutcomeStatus, ReadBack, Reason, Sample, SampleStatus, WorkloadState
from empire.policies.scaling import SignalType, Target

__all__ = ["UTILIZATION", "SimulatedSurroundings", "TargetModel"]

UTILIZATION = 0.7
"""Where a right-sized replica runs (HPA's default target, and the backtest's)."""


@dataclass(frozen=True)
class TargetModel:
    capacity: float  # trace requests per minute one ready replica serves at 100 %


class SimulatedSurroundings:
    """The `Observer`, `WorkloadReader` and `ScaleTo` executor of a simulated daemon.

    `history("target/signal", ...)` (the forecasters' and the horizon's fitting data) returns what
    the signal read: the values observed so far, and before the simulation started (`warmup` of
    the trace) what a right-sized target would have read."""

    source = "simulation"  # the `source` label of empire_metric_source_up
    history_by_signal = True

    def __init__(self, trace: DemandTrace, clock: Clock, *, offset: timedelta, startup_delay: timedelta,
                 peak_share: float = 0.8) -> None:  # fmt: skip
        self.trace, self.clock, self.offset = trace, clock, offset
        self.startup_delay, self.peak_share = startup_delay, peak_share
        finite = trace.values[np.isfinite(trace.values)]
        self.peak = float(np.percentile(finite, 99.5)) if len(finite) else 1.0
        self.models: dict[str, TargetModel] = {}
        self.clusters: dict[str, SimulatedCluster] = {}
        self.books: dict[str, Books] = {}
        self._observed: dict[tuple[str, str], np.ndarray] = {}  # minute -> value the signal read (NaN: not yet)
        self._counted: dict[str, int] = {}  # target -> last minute counted in its books
        self._targets: dict[str, Target] = {}

    # -- the trace on the simulated clock ---------------------------------------------------------
    def minute(self, at: datetime) -> int:
        """The trace minute at simulated instant `at` (may be out of range)."""
        return math.floor((at - self.offset - self.trace.start).total_seconds() / 60)

    def at(self, minute: int) -> datetime:
        return self.trace.start + self.offset + timedelta(minutes=minute)

    def demand(self, at: datetime) -> float | None:
        """Requests per minute at `at`: None outside the trace or where it recorded nothing."""
        i = self.minute(at)
        if not 0 <= i < len(self.trace):
            return None
        v = float(self.trace.values[i])
        return v if math.isfinite(v) else None

    @property
    def end(self) -> datetime:
        return self.at(len(self.trace))

    # -- per target ------------------------------------------------------------------------------
    def model(self, target: Target) -> TargetModel:
        m = self.models.get(target.name)
        if m is None:
            m = self.models[target.name] = TargetModel(
                max(1e-9, self.peak / (self.peak_share * target.max_replicas * UTILIZATION))
            )
        return m

    def cluster(self, target: Target) -> SimulatedCluster:
        self._targets[target.name] = target
        c = self.clusters.get(target.name)
        if c is None:
            first = self.demand(self.clock.now()) or 0.0
            need = first / self.model(target).capacity
            replicas = min(target.max_replicas, max(target.min_replicas, math.ceil(need / UTILIZATION)))
            books = self.books[target.name] = Books(self.model(target).capacity)
            c = self.clusters[target.name] = SimulatedCluster(self.clock, self.startup_delay, replicas, books)
        return c

    def value(self, target: Target, signal_name: str, need: float, ready: int | None) -> float:
        """What a signal reads when `need` replicas' worth of work meets `ready` replicas (None:
        right-sized)."""
        signal = next(s for s in target.signals if s.name == signal_name)
        if signal.type == SignalType.total:
            return need / UTILIZATION * signal.target
        u = UTILIZATION if ready is None else (min(1.0, need / ready) if ready > 0 else (1.0 if need > 0 else 0.0))
        return signal.target * u / UTILIZATION

    # -- Observer --------------------------------------------------------------------------------
    async def observe(self, target: Target, now: datetime) -> tuple[Sample, ...]:
        cluster = self.cluster(target)
        i = self.minute(now)
        at = self.at(i)
        demand = self.demand(now)
        ready = cluster.ready(now)
        self._count(target, cluster, i, demand)
        samples = []
        for signal in target.signals:
            if demand is None:
                why = "the trace has ended" if i >= len(self.trace) else "the trace recorded nothing (a failed scrape)"
                samples.append(Sample(signal.name, None, at, (now - at).total_seconds(), SampleStatus.missing, why))
                continue
            value = self.value(target, signal.name, demand / self.model(target).capacity, ready)
            self._series(target, signal.name)[i] = value
            samples.append(Sample(signal.name, value, at, (now - at).total_seconds()))
        return tuple(samples)

    def _count(self, target: Target, cluster: SimulatedCluster, i: int, demand: float | None) -> None:
        """Count each trace minute once in the target's books (a minute no tick saw is not counted)."""
        if self._counted.get(target.name, -1) >= i or not 0 <= i < len(self.trace):
            return
        self._counted[target.name] = i
        books = self.books[target.name]
        ok = bool(self.trace.ok[i]) and demand is not None
        books.count(demand or 0.0, ok, cluster.replicas, cluster.ready())

    def _series(self, target: Target, signal: str) -> np.ndarray:
        key = (target.name, signal)
        s = self._observed.get(key)
        if s is None:
            s = self._observed[key] = np.full(len(self.trace), np.nan)
        return s

    async def history(self, query: str, start: datetime, end: datetime, step: float) -> list[tuple[datetime, float]]:
        name, _, signal = query.rpartition("/")
        target = self._targets.get(name)
        if target is None or all(s.name != signal for s in target.signals):
            return []  # a PromQL query (a persona's trend): no such data in a simulation
        lo, hi = max(0, self.minute(start)), min(len(self.trace) - 1, self.minute(end))
        if hi < lo:
            return []
        every = max(1, round(step / 60))
        idx = np.arange(lo, hi + 1, every)
        demand = self.trace.values[idx]
        ideal = np.array([self.value(target, signal, d / self.model(target).capacity, None) for d in demand])
        seen = self._series(target, signal)[idx]
        now = self.minute(self.clock.now())
        values = np.where(np.isfinite(seen), seen, ideal)
        return [(self.at(int(i)), float(v)) for i, v in zip(idx, values, strict=True) if i <= now and math.isfinite(v)]

    def set_targets(self, targets: tuple[Target, ...]) -> None:
        """The policy's targets (on start and every reload): `history` needs their signals."""
        self._targets = {t.name: t for t in targets}

    async def aclose(self) -> None:
        return None

    # -- WorkloadReader and ScaleTo executor -----------------------------------------------------
    async def workload(self, target: Target) -> WorkloadState:
        return await self.cluster(target).workload(target)

    async def execute(self, action: Action) -> Outcome:
        target = self._targets.get(getattr(action, "target", ""))
        if target is None:
            return Outcome(OutcomeStatus.skipped, Reason.no_change)
        return await self.cluster(target).execute(action)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        target = self._targets.get(record.subject)
        if target is None:
            return ReadBack(False, {})
        return await self.cluster(target).read_back(record)

    # -- what the terminal and /status show ------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, c in self.clusters.items():
            b = self.books[name]
            out[name] = {"replicas": c.replicas, "ready": c.ready(), "capacity_per_replica": round(b.capacity, 2),
                         "under_provisioned_minutes": b.under_minutes, "counted_minutes": b.minutes,
                         "replica_hours": round(b.replica_minutes / 60, 1)}  # fmt: skip
        return out
