"""Time one decide+stabilize tick (the pure core of the loop) for 1, 100 and 10,000 targets.

Each target has two signals (a `total` queue and an `average` CPU) and HPA's default behavior,
with a steady-state history: 20 recommendations in the 5-minute scale-down window and a recent
scale event, so the windows and rate policies do real work. The observation varies per target
(some scale up, some down, some hold). Prints one JSON line: median and p90 wall time per tick
over repeats, and the median cost per target.

    .venv/bin/python benchmarks/decide.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta

from empire.agent.deciding import decide
from empire.agent.stabilizing import ScaleEvent, TargetHistory
from empire.agent.types import Observation, Sample
from empire.policies.scaling import Target

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def build(n: int) -> list[tuple[Target, Observation, TargetHistory]]:
    out = []
    for i in range(n):
        t = Target.model_validate({
            "name": f"t{i}", "workload": {"name": f"w{i}"}, "min_replicas": 1, "max_replicas": 100,
            "signals": [{"name": "queue", "query": "q", "type": "total", "target": 50},
                        {"name": "cpu", "query": "c", "type": "average", "target": 0.7}],
        })  # fmt: skip
        current = 4 + i % 17
        queue = 50.0 * current * (0.5 + (i % 7) / 4)  # 0.5x .. 2x of the current capacity
        obs = Observation(t.name, NOW, (Sample("queue", queue, NOW, 3.0), Sample("cpu", 0.6, NOW, 3.0)), current)
        recs = tuple((NOW - timedelta(seconds=15 * k), current + (k % 3) - 1) for k in range(1, 21))
        hist = TargetHistory(recs, (ScaleEvent(NOW - timedelta(seconds=40), 1),), 0, None)
        out.append((t, obs, hist))
    return out


def tick(cases: list[tuple[Target, Observation, TargetHistory]]) -> float:
    start = time.perf_counter()
    for target, obs, hist in cases:
        decide(target, obs, hist, NOW)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=0, help="default: 200 / 50 / 5 for 1 / 100 / 10,000 targets")
    args = ap.parse_args()
    result: dict[str, object] = {"benchmark": "decide+stabilize tick", "python": platform.python_version()}
    for n, default_repeats in ((1, 200), (100, 50), (10_000, 5)):
        cases = build(n)
        tick(cases)  # warm-up
        times = [tick(cases) for _ in range(args.repeats or default_repeats)]
        med = statistics.median(times)
        result[f"targets_{n}"] = {
            "median_ms": round(med * 1000, 3),
            "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 3),
            "per_target_us": round(med / n * 1e6, 2),
            "repeats": len(times),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
