"""The control loop's metric group (`Monitor.loop`): what it decided, what it did, how fresh its data was.

Labels come from closed sets only: target and signal names from the policy, `Reason` members,
action kinds (`scale`, `generate`, `retier`, `alert`), fixed result and stage names. Actions of
every area (scaling, generation, tiering, alerting) are counted here because they all go through
the one journaling `ActionRunner`, so "what did the agent do, and why" is one metric.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LoopMetrics"]

STAGES = ("observe", "workload", "decide", "execute", "record", "job", "leader", "reconcile")


class LoopMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "empire_decisions", "Decisions per target by reason (one count per reason applied)",
            ["target", "reason"], registry=registry,
        )  # fmt: skip
        self.actions = Counter(
            "empire_actions", "Actions journaled by kind, reason and result",
            ["kind", "reason", "result"], registry=registry,
        )  # fmt: skip
        self.errors = Counter(
            "empire_loop_errors", "Errors caught by the loop's guards, by stage", ["stage", "error_class"],
            registry=registry,
        )  # fmt: skip
        self.tick_duration = Histogram(
            "empire_loop_tick_duration_seconds", "Wall time of one observe-decide-execute-record tick",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry,
        )  # fmt: skip
        self.ticks = Counter("empire_loop_ticks", "Ticks run (leader or not)", registry=registry)
        self.last_tick = Gauge(
            "empire_loop_last_tick_timestamp_seconds", "When the last tick finished (loop clock)", registry=registry
        )
        self.staleness = Gauge(
            "empire_observation_staleness_seconds", "Age of the newest sample of each signal",
            ["target", "signal"], registry=registry,
        )  # fmt: skip
        self.source_up = Gauge("empire_metric_source_up", "1 when the metric source answered", registry=registry)
        self.leader = Gauge("empire_leader", "1 while this replica holds the leadership", registry=registry)
        self.desired = Gauge("empire_desired_replicas", "Desired replicas per target", ["target"], registry=registry)
        self.current = Gauge("empire_current_replicas", "Current replicas per target", ["target"], registry=registry)
        self.policy_reloads = Counter(
            "empire_policy_reloads",
            "Policy file changes, by result (applied | rejected)",
            ["result"],
            registry=registry,
        )
        self.jobs = Counter(
            "empire_periodic_jobs", "Periodic job runs by job and result", ["job", "result"], registry=registry
        )

    def forget_target(self, target: str) -> None:
        """Drop per-target series for a target removed from the policy."""
        for gauge in (self.desired, self.current):
            with contextlib.suppress(KeyError):
                gauge.remove(target)
