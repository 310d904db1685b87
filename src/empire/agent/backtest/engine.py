"""The backtest: a demand trace through the REAL control loop, once per policy, on one simulated cluster model.

`reactive` and `empire` are two scaling targets run by `ControlLoop.tick()` on a `FakeClock`, one
tick per minute: the same observe -> decide -> stabilize -> execute -> record code as `empire run`,
with the trace behind a `ReplayObserver`, a `SimulatedCluster` as workload reader and executor, the
journal in memory and, for `empire`, the `ForecastService` refitting on the loop's `PeriodicJobs`.
At minute t the tick sees that minute's demand, then the minute is counted with the replicas ready
after the tick (so a replica requested at t serves from t + startup_delay).

`oracle` knows the future: it requests, at every minute, the replicas the next `startup_delay`
minutes will need, `max(need[t .. t+delay])` with `need = ceil(demand / capacity)`. That is the
cheapest schedule with zero under-provisioning when a started replica is paid from its request (per
replica level, keeping it through a gap of at most `delay` minutes costs no more than restarting
it), so it is the lower bound the other two are compared with. It runs through the same cluster
and books, which checks that it is indeed never short.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

import anyio
import numpy as np
import yaml
from prometheus_client import CollectorRegistry

from empire.agent.backtest.cluster import Books, SimulatedCluster
from empire.agent.backtest.trace import DemandTrace
from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.loop import ControlLoop
from empire.agent.monitor import Monitor
from empire.agent.predictive import ForecastService
from empire.agent.records import ActionRecord, ActionState, DecisionRecord
from empire.agent.scheduler import PeriodicJobs
from empire.agent.types import ScaleTo
from empire.policies.loading import LoadedPolicy, load_policy_text
from empire.state.memory import MemoryStateStore

__all__ = ["POLICIES", "BacktestSettings", "PolicyRun", "backtest_policy", "run_backtest"]

POLICIES = ("reactive", "empire", "oracle")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BacktestSettings:
    """Cluster model, the HPA baseline, and what empire runs with. Defaults: the issue's reference settings."""

    capacity: float = 10.0  # requests per minute one ready replica serves
    startup_delay: float = 120.0  # seconds from request to ready
    min_replicas: int = 1
    max_replicas: int = 10_000
    target_utilization: float = 0.7  # HPA v2 default target
    tolerance: float = 0.1
    scale_down_window: float = 300.0
    # empire: the same reactive rule (same target, same windows) plus the guarded forecast
    quantile: float = 0.975
    scheduling_buffer: float | None = None  # default: the start-up delay
    observation_lag: float = 0.0  # seconds before a minute's demand is visible (0: the reference convention)
    history: float = 14 * 86400.0
    refit_every: float = 6 * 3600.0

    @property
    def buffer(self) -> float:
        return self.scheduling_buffer if self.scheduling_buffer is not None else self.startup_delay

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scheduling_buffer": self.buffer}


def _target(name: str, s: BacktestSettings, predictive: dict[str, Any]) -> dict:
    return {
        "name": name, "workload": {"name": name, "namespace": "backtest"},
        "min_replicas": s.min_replicas, "max_replicas": s.max_replicas, "tolerance": s.tolerance,
        "startup_grace": "0s",
        "signals": [{"name": "demand", "query": "demand", "type": "total", "target": s.target_utilization * s.capacity}],
        "behavior": {"scale_down": {"stabilization_window": f"{int(s.scale_down_window)}s", "select": "max",
                                    "policies": [{"type": "percent", "value": 100, "period": "15s"}]}},
        "predictive": predictive,
    }  # fmt: skip


def policy_for(name: str, s: BacktestSettings) -> LoadedPolicy:
    """The policy document each loop runs (shown in the JSON output, valid for `empire run` too)."""
    if name == "reactive":
        target = _target(name, s, {"mode": "off"})
    elif name == "empire":
        predictive = {
            "mode": "forecast_and_scale", "signal": "demand", "quantile": s.quantile,
            "scheduling_buffer": f"{int(s.buffer)}s", "target": s.capacity,
            "history": f"{int(s.history)}s", "refit_every": f"{int(s.refit_every)}s",
        }  # fmt: skip
        target = _target(name, s, predictive)
    else:
        raise ValueError(f"no loop policy for {name!r}")
    body = {"loop": {"interval": "60s"}, "targets": [target]}
    return load_policy_text(yaml.safe_dump(body), source=f"<backtest:{name}>")


class _LeanStore(MemoryStateStore):
    """MemoryStateStore with O(1) journal look-ups and bounded memory (86,400 decisions per run)."""

    def __init__(self, keep: int = 500) -> None:
        super().__init__()
        self.keep = keep
        self.decision_count = 0
        self._by_key: dict[str, int] = {}
        self._last_id = 0

    async def record_decision(self, rec: DecisionRecord) -> int:
        self.decision_count += 1
        self.decisions.append(rec)
        if len(self.decisions) > 2 * self.keep:
            del self.decisions[: self.keep]
        return self.decision_count

    async def write_intent(self, rec: ActionRecord) -> ActionRecord:
        existing = self._by_key.get(rec.idempotency_key)
        if existing is not None and existing in self.actions:
            return self.actions[existing]
        self._last_id += 1
        stored = replace(rec, id=self._last_id, state=ActionState.intent)
        self.actions[self._last_id] = stored
        self._by_key[rec.idempotency_key] = self._last_id
        if len(self.actions) > 2 * self.keep:  # only the newest matter: finished ones are never read again
            for old in sorted(self.actions)[: self.keep]:
                self._by_key.pop(self.actions.pop(old).idempotency_key, None)
        return stored

    async def action_by_key(self, key: str) -> ActionRecord | None:
        found = self._by_key.get(key)
        return self.actions.get(found) if found is not None else None


@dataclass
class PolicyRun:
    name: str
    books: Books
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {**self.books.summary(), "wall_seconds": round(self.seconds, 2), **self.details}


def _initial_replicas(trace: DemandTrace, s: BacktestSettings) -> int:
    """Every run starts in HPA's steady state for the first recorded minute, all replicas ready."""
    finite = trace.values[np.isfinite(trace.values)]
    first = float(finite[0]) if len(finite) else 0.0
    return min(s.max_replicas, max(s.min_replicas, math.ceil(first / (s.target_utilization * s.capacity))))


async def _run_loop(name: str, trace: DemandTrace, s: BacktestSettings, progress: Progress | None) -> PolicyRun:
    loaded = policy_for(name, s)
    clock = FakeClock(trace.start)
    books = Books(s.capacity)
    cluster = SimulatedCluster(clock, timedelta(seconds=s.startup_delay), _initial_replicas(trace, s), books)
    books.actions = 0
    store = _LeanStore()
    monitor = Monitor(CollectorRegistry())
    observer = trace.observer(lag=s.observation_lag)
    runner = ActionRunner(store, {ScaleTo: cluster}, clock, monitor, replica="backtest")
    jobs = PeriodicJobs(clock, monitor)
    loop = ControlLoop(policy=loaded, observer=observer, workloads=cluster, runner=runner, store=store, clock=clock,
                       monitor=monitor, replica="backtest", jobs=jobs, drive_jobs=True)  # fmt: skip
    service = None
    if name == "empire":
        service = ForecastService(observer, store, lambda: loop.policy, monitor=monitor)
        loop.forecaster = service
        jobs.add("predictive-refit", timedelta(minutes=5), service.refit_due)
    started = time.perf_counter()
    values, ok = trace.values, trace.ok
    n = len(trace)
    every = max(1, n // 200)
    for i in range(n):
        await loop.tick()
        books.count(float(values[i]) if ok[i] else 0.0, bool(ok[i]), cluster.replicas, cluster.ready())
        clock.advance(60)
        if progress is not None and (i % every == 0 or i == n - 1):
            progress(name, i + 1, n)
    details: dict[str, Any] = {"decisions": store.decision_count}
    if service is not None:
        models = [m for m in store.models if m.metrics.get("used")]
        details["forecast"] = {
            "refits": len(models),
            "models_used": {k: sum(1 for m in models if m.kind == k) for k in sorted({m.kind for m in models})},
            "last": service.status(),
        }
    return PolicyRun(name, books, time.perf_counter() - started, details)


def _run_oracle(trace: DemandTrace, s: BacktestSettings, progress: Progress | None) -> PolicyRun:
    started = time.perf_counter()
    delay = math.ceil(s.startup_delay / 60 - 1e-9)
    demand = np.where(trace.ok & np.isfinite(trace.values), trace.values, 0.0)
    need = np.clip(np.ceil(demand / s.capacity - 1e-9), s.min_replicas, s.max_replicas).astype(int)
    padded = np.concatenate([need, np.full(delay, need[-1])])
    plan = np.max(np.lib.stride_tricks.sliding_window_view(padded, delay + 1), axis=1)[: len(need)]
    clock = FakeClock(trace.start)
    books = Books(s.capacity)
    cluster = SimulatedCluster(clock, timedelta(seconds=s.startup_delay), int(plan[0]), books)
    books.actions = 0
    n = len(trace)
    for i in range(n):
        cluster.scale(int(plan[i]))
        books.count(float(demand[i]), bool(trace.ok[i]), cluster.replicas, cluster.ready())
        clock.advance(60)
    if progress is not None:
        progress("oracle", n, n)
    return PolicyRun("oracle", books, time.perf_counter() - started)


def backtest_policy(name: str, trace: DemandTrace, settings: BacktestSettings, progress: Progress | None = None):
    """One policy's run (a process-pool entry point: pure inputs, a picklable result)."""
    if name == "oracle":
        return _run_oracle(trace, settings, progress)
    return anyio.run(_run_loop, name, trace, settings, progress)


def run_backtest(
    trace: DemandTrace,
    settings: BacktestSettings | None = None,
    policies: tuple[str, ...] = POLICIES,
    progress: Progress | None = None,
    workers: int = 1,
) -> dict[str, PolicyRun]:
    """Every requested policy on the same trace and settings (in `workers` processes), in the order given."""
    settings = settings or BacktestSettings()
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; valid: {', '.join(POLICIES)}")
    loops = [p for p in policies if p != "oracle"]
    runs: dict[str, PolicyRun] = {}
    if workers > 1 and len(loops) > 1:
        # all loop policies but the last in worker processes; the last here, reporting progress
        ctx = multiprocessing.get_context("spawn")  # a clean child: no inherited threads or locks
        with ProcessPoolExecutor(min(workers - 1, len(loops) - 1), mp_context=ctx) as pool:
            futures = {name: pool.submit(backtest_policy, name, trace, settings, None) for name in loops[:-1]}
            runs[loops[-1]] = backtest_policy(loops[-1], trace, settings, progress)
            for name, future in futures.items():
                runs[name] = future.result()
    else:
        for name in loops:
            runs[name] = backtest_policy(name, trace, settings, progress)
    if "oracle" in policies:
        runs["oracle"] = backtest_policy("oracle", trace, settings, progress)
    return {name: runs[name] for name in policies}
