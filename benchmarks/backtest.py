"""The backtest's claim: on the shipped NASA-HTTP per-minute trace with the reference settings
(capacity 10 req/min, 2-minute start-up, HPA v2 defaults), empire has at most half of reactive's
under-provisioned minutes at no more replica-hours, in one run, and the whole run stays fast.

Prints one JSON line: each policy's figures (under-provisioned minutes, demand not served,
replica-hours, scaling actions, wall seconds), whether the target is met, and the total wall time
with `--workers` processes (2: reactive beside empire, as `make demo` runs it).

    .venv/bin/python benchmarks/backtest.py [--days N] [--workers N] [TRACE.csv]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from empire.agent.backtest import BacktestSettings, load_trace, run_backtest
from empire.agent.backtest.report import target_check


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trace", nargs="?", help="default: the shipped NASA-HTTP trace")
    parser.add_argument("--days", type=float)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    trace = load_trace(args.trace)
    if args.days:
        trace = trace.head(int(args.days * 1440))
    settings = BacktestSettings()
    started = time.perf_counter()
    runs = run_backtest(trace, settings, workers=args.workers)
    wall = time.perf_counter() - started
    print(json.dumps({
        "benchmark": "backtest", "trace": trace.name, "minutes": len(trace), "counted_minutes": trace.valid_minutes,
        "settings": settings.as_dict(),
        "policies": {name: run.summary() for name, run in runs.items()},
        "target": target_check(runs), "wall_seconds": round(wall, 1), "workers": args.workers,
        "ticks_per_second": round(len(trace) * sum(1 for n in runs if n != "oracle") / wall),
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
