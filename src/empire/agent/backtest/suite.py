"""The backtest suite: every trace of a suite through reactive, empire and oracle, and the totals.

Why a suite: a predictive scaler tuned on one trace (NASA-HTTP) was worse than plain HPA on
traffic it had not seen. A claim about predictive scaling is therefore made on several kinds of
real demand at once, with one set of settings and no per-trace tuning:

* `nasa`: NASA-HTTP per minute (the shipped trace; bursty web traffic with a daily cycle);
* `taxi`: NYC taxi passengers (30-minute counts spread over their minutes: smooth, weekly cycle),
  and `taxi-poisson-0..2`: the same rate drawn as Poisson arrivals per minute (seeds 0-2);
* `twitter-crm|cvs|fb|ibm|ko`: Twitter mention volumes (5-minute counts; bursty, low counts);
* `flash-crowd`: a seeded synthetic web trace with a flash crowd every 6 hours on average.

**Capacity per replica.** Traces differ in volume by four orders of magnitude, so each is given the
capacity at which its 99th-percentile counted minute needs `REPLICAS_AT_P99` (40) replicas:
`capacity = p99(demand per minute) / 40`. NASA keeps the reference capacity (10 requests per
minute) so that its figures stay comparable with earlier releases. Everything else is the
backtest's defaults (`BacktestSettings`): 2-minute start-up, HPA at 70 %, tolerance 0.1, 5-minute
scale-down window, one tick per minute.

**A trace holds** when empire has no more under-provisioned minutes and no more replica-hours than
reactive on it. **The suite holds** when every trace holds and, over all traces together, empire has
at most half of reactive's under-provisioned minutes at no more replica-hours.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from empire.agent.backtest.engine import POLICIES, BacktestSettings, PolicyRun, backtest_policy
from empire.agent.backtest.trace import DemandTrace, load_trace, synthetic_trace
from empire.errors import ConfigError

__all__ = [
    "DEFAULT_SUITE",
    "REPLICAS_AT_P99",
    "SuiteTrace",
    "TraceResult",
    "capacity_for",
    "run_suite",
    "suite_check",
    "suite_trace",
    "trace_check",
]

REPLICAS_AT_P99 = 40
NASA_CAPACITY = 10.0


@dataclass(frozen=True)
class SuiteTrace:
    """One trace of a suite: where its demand comes from and how it is drawn."""

    name: str
    source: str  # a CSV file, a file of the package's data/suite, "nasa" (the shipped trace) or "flash-crowd"
    noise: str = "none"
    seed: int = 0
    capacity: float | None = None  # None: the p99 rule

    def load(self) -> DemandTrace:
        if self.source == "flash-crowd":
            trace = synthetic_trace(days=28, seed=self.seed, burst_every=0.25)
            return replace(trace, name=self.name)
        path = (
            None if self.source == "nasa" else Path(self.source) if Path(self.source).is_file() else _data(self.source)
        )
        trace = load_trace(path, noise=self.noise, seed=self.seed)
        return replace(trace, name=self.name)


def _data(name: str) -> Path:
    return Path(str(resources.files("empire") / "data" / "suite" / name))


DEFAULT_SUITE: tuple[SuiteTrace, ...] = (
    SuiteTrace("nasa", "nasa", capacity=NASA_CAPACITY),
    SuiteTrace("taxi", "nyc_taxi.csv.gz"),
    *(SuiteTrace(f"taxi-poisson-{seed}", "nyc_taxi.csv.gz", noise="poisson", seed=seed) for seed in range(3)),
    *(SuiteTrace(f"twitter-{s}", f"twitter_volume_{s}.csv.gz") for s in ("crm", "cvs", "fb", "ibm", "ko")),
    SuiteTrace("flash-crowd", "flash-crowd"),
)


def suite_trace(name: str) -> SuiteTrace:
    """A trace of the default suite by name (a `ConfigError` names the valid ones)."""
    for t in DEFAULT_SUITE:
        if t.name == name:
            return t
    raise ConfigError(f"unknown suite trace {name!r}; valid: {', '.join(t.name for t in DEFAULT_SUITE)}")


def capacity_for(trace: DemandTrace, replicas_at_p99: int = REPLICAS_AT_P99) -> float:
    """Demand per minute one replica serves so that the trace's 99th-percentile counted minute needs
    `replicas_at_p99` replicas."""
    counted = trace.values[trace.ok & np.isfinite(trace.values)]
    if not len(counted):
        raise ConfigError(f"{trace.name}: no counted minutes")
    p99 = float(np.percentile(counted, 99))
    if p99 <= 0:
        raise ConfigError(f"{trace.name}: the 99th-percentile minute has no demand")
    return p99 / replicas_at_p99


@dataclass
class TraceResult:
    """One trace's runs (summaries, and the runs themselves when kept for a plot)."""

    name: str
    minutes: int
    counted_minutes: int
    capacity: float
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def check(self) -> dict[str, Any] | None:
        return trace_check(self.summaries)


def trace_check(summaries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Does empire hold on this trace: no more under-provisioned minutes, no more replica-hours than reactive?"""
    if "reactive" not in summaries or "empire" not in summaries:
        return None
    r, e = summaries["reactive"], summaries["empire"]
    under_ok = e["under_provisioned_minutes"] <= r["under_provisioned_minutes"]
    cost_ok = e["replica_hours"] <= r["replica_hours"]
    return {"under_not_more": under_ok, "replica_hours_not_more": cost_ok, "holds": under_ok and cost_ok}


def suite_check(results: list[TraceResult]) -> dict[str, Any] | None:
    """The totals over all traces and whether the suite holds (see the module docstring)."""
    if not results or any(trace_check(r.summaries) is None for r in results):
        return None
    totals: dict[str, dict[str, float]] = {}
    for policy in results[0].summaries:
        totals[policy] = {
            "under_provisioned_minutes": sum(r.summaries[policy]["under_provisioned_minutes"] for r in results),
            "replica_hours": round(sum(r.summaries[policy]["replica_hours"] for r in results), 1),
            "counted_minutes": sum(r.summaries[policy]["counted_minutes"] for r in results),
        }
    r, e = totals["reactive"], totals["empire"]
    half = r["under_provisioned_minutes"] / 2
    failing = [x.name for x in results if not (trace_check(x.summaries) or {}).get("holds")]
    under_ok = e["under_provisioned_minutes"] <= half
    cost_ok = e["replica_hours"] <= r["replica_hours"]
    return {
        "totals": totals, "every_trace_holds": not failing, "traces_not_holding": failing,
        "under_provisioned_at_most_half": under_ok, "replica_hours_not_more": cost_ok,
        "under_ratio": round(e["under_provisioned_minutes"] / max(1, r["under_provisioned_minutes"]), 4),
        "replica_hours_ratio": round(e["replica_hours"] / max(1e-9, r["replica_hours"]), 4),
        "met": not failing and under_ok and cost_ok,
    }  # fmt: skip


def _job(spec: SuiteTrace, policy: str, settings: BacktestSettings) -> tuple[str, str, PolicyRun, int, int, float]:
    """One (trace, policy) run: a process-pool entry point (the trace is loaded in the worker)."""
    trace = spec.load()
    capacity = spec.capacity if spec.capacity is not None else capacity_for(trace)
    run = backtest_policy(policy, trace, replace(settings, capacity=capacity))
    return spec.name, policy, run, len(trace), trace.valid_minutes, capacity


Progress = Callable[[str], None]


def run_suite(
    traces: tuple[SuiteTrace, ...] = DEFAULT_SUITE,
    settings: BacktestSettings | None = None,
    policies: tuple[str, ...] = POLICIES,
    workers: int = 1,
    progress: Progress | None = None,
    keep: str | None = None,
) -> tuple[list[TraceResult], dict[str, PolicyRun]]:
    """Every trace x policy (in `workers` processes, the longest first), in suite order. `settings` apply
    to every trace except the capacity (the p99 rule, or the trace's own). Returns the results and, for
    the trace named `keep`, its runs (for a plot)."""
    settings = settings or BacktestSettings()
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; valid: {', '.join(POLICIES)}")
    jobs = [(spec, policy) for spec in traces for policy in policies]
    jobs.sort(key=lambda j: (j[1] == "oracle", -_weight(j[0])))  # the long loops first, the cheap oracles last
    results = {spec.name: None for spec in traces}
    found: dict[str, TraceResult] = {}
    kept: dict[str, PolicyRun] = {}

    def record(name: str, policy: str, run: PolicyRun, minutes: int, counted: int, capacity: float) -> None:
        result = found.setdefault(name, TraceResult(name, minutes, counted, capacity))
        result.summaries[policy] = run.summary()
        result.seconds[policy] = round(run.seconds, 1)
        if name == keep:
            kept[policy] = run
        if progress is not None:
            done = sum(len(r.summaries) for r in found.values())
            progress(f"suite: {done}/{len(jobs)} runs done ({name} {policy}, {run.seconds:.0f} s)")

    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("spawn")  # a clean child: no inherited threads or locks
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(_job, spec, policy, settings) for spec, policy in jobs]
            for future in as_completed(futures):
                record(*future.result())
    else:
        for spec, policy in jobs:
            record(*_job(spec, policy, settings))
    ordered = [found[name] for name in results]
    for r in ordered:
        r.summaries = {p: r.summaries[p] for p in policies}
    return ordered, kept


def _weight(spec: SuiteTrace) -> float:
    """Rough length of a trace, to start the longest first (taxi: 310,000 minutes; the others under 90,000)."""
    if spec.source.startswith("nyc_taxi"):
        return 310_000
    return 40_000 if spec.source == "flash-crowd" else 85_000


def format_suite(results: list[TraceResult], settings: BacktestSettings) -> str:
    """The per-trace table and the totals."""
    lines = [
        f"suite: {len(results)} traces; capacity per replica: the p99 minute needs {REPLICAS_AT_P99} replicas "
        f"(nasa: {NASA_CAPACITY:g} req/min); start-up {settings.startup_delay:g}s, HPA at "
        f"{settings.target_utilization:.0%}, scale-down window {settings.scale_down_window:g}s, empire quantile "
        f"{settings.quantile:g}",
        "",
        f"{'trace':<16}{'minutes':>9}{'capacity':>10}  {'under-provisioned min':>27}  {'replica-hours':>30}  holds",
        f"{'':<16}{'':>9}{'':>10}  {'reactive':>9}{'empire':>9}{'oracle':>9}  {'reactive':>10}{'empire':>10}"
        f"{'oracle':>10}",
    ]
    for r in results:
        s, check = r.summaries, r.check()
        under = "".join(_cell(s, p, "under_provisioned_minutes", 9, ",") for p in ("reactive", "empire", "oracle"))
        hours = "".join(_cell(s, p, "replica_hours", 10, ",.0f") for p in ("reactive", "empire", "oracle"))
        lines.append(f"{r.name:<16}{r.minutes:>9,}{r.capacity:>10.4g}  {under}  {hours}  "
                     f"{_yes(check['holds']) if check else '-'}")  # fmt: skip
    check = suite_check(results)
    if check is not None:
        t = check["totals"]
        lines += [
            "",
            f"{'all traces':<16}{'':>9}{'':>10}  {t['reactive']['under_provisioned_minutes']:>9,}"
            f"{t['empire']['under_provisioned_minutes']:>9,}{t.get('oracle', {}).get('under_provisioned_minutes', '-'):>9}  "
            f"{t['reactive']['replica_hours']:>10,.0f}{t['empire']['replica_hours']:>10,.0f}"
            f"{t['oracle']['replica_hours'] if 'oracle' in t else math.nan:>10,.0f}",
            f"empire vs reactive over the suite: {check['under_ratio']:.1%} of the under-provisioned minutes "
            f"(target: at most 50%), {check['replica_hours_ratio']:.1%} of the replica-hours (at most 100%); "
            f"every trace holds: {_yes(check['every_trace_holds'])}"
            + (f" (not: {', '.join(check['traces_not_holding'])})" if check["traces_not_holding"] else "")
            + f"; target met: {_yes(check['met'])}",
        ]
    return "\n".join(lines)


def _cell(summaries: dict[str, dict[str, Any]], policy: str, key: str, width: int, fmt: str) -> str:
    return f"{summaries[policy][key]:>{width}{fmt}}" if policy in summaries else f"{'-':>{width}}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"
