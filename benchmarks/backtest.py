"""The predictive-scaling claim, on the whole backtest suite: with the default settings and nothing
tuned per trace, empire is no worse than plain reactive HPA on every trace (under-provisioned minutes
and replica-hours), and over the suite it has at most half of reactive's under-provisioned minutes at
no more replica-hours. NASA-HTTP alone keeps the half target too.

The suite (`empire.agent.backtest.suite.DEFAULT_SUITE`): NASA-HTTP per minute (shipped), NYC taxi
(native, and Poisson arrivals with seeds 0-2), the Twitter volumes of CRM, CVS, FB, IBM and KO, and a
seeded synthetic flash crowd; each trace's capacity per replica puts its 99th-percentile minute at 40
replicas (NASA: 10 requests per minute, as before). Prints one JSON line: per trace and policy the
under-provisioned minutes, replica-hours, scaling actions and wall seconds; the totals; whether each
target holds; the wall time with `--workers` processes.

    .venv/bin/python benchmarks/backtest.py [--workers N] [--traces nasa,twitter-fb,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from empire.agent.backtest.engine import BacktestSettings
from empire.agent.backtest.suite import DEFAULT_SUITE, run_suite, suite_check, suite_trace, trace_check


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--traces", help="comma-separated names (default: the whole suite)")
    args = parser.parse_args()
    traces = tuple(suite_trace(n) for n in args.traces.split(",")) if args.traces else DEFAULT_SUITE
    settings = BacktestSettings()
    started = time.perf_counter()
    results, _ = run_suite(traces, settings, workers=args.workers)
    wall = time.perf_counter() - started
    keys = ("under_provisioned_minutes", "replica_hours", "scaling_actions")
    per_trace = {
        r.name: {"minutes": r.minutes, "capacity": round(r.capacity, 6), "holds": (r.check() or {}).get("holds"),
                 **{p: {**{k: s[k] for k in keys}, "wall_seconds": r.seconds[p]} for p, s in r.summaries.items()}}
        for r in results
    }  # fmt: skip
    nasa = next((r for r in results if r.name == "nasa"), None)
    nasa_half = None
    if nasa is not None and trace_check(nasa.summaries):
        s = nasa.summaries
        nasa_half = s["empire"]["under_provisioned_minutes"] <= s["reactive"]["under_provisioned_minutes"] / 2
    print(json.dumps({
        "benchmark": "backtest_suite", "settings": settings.as_dict(), "traces": per_trace,
        "suite": suite_check(results), "nasa_at_most_half": nasa_half, "wall_seconds": round(wall, 1),
        "workers": args.workers, "cpus": os.cpu_count(), "python": platform.python_version(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
