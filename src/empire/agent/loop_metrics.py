"""The control loop's metric group (`Monitor.loop`): what it decided, what it did, how fresh its data was.

Labels come from closed sets only: target and signal names from the policy, `Reason` members,
action kinds (`scale`, `generate`, `retier`, `alert`), fixed result and stage names. Actions of
every area (scaling, generation, tiering, alerting) are counted here because they all go through
the one journaling `ActionRunner`, so "what did the agent do, and why" is one metric.

Per-target series carry `namespace`, `workload` and `workload_kind` besides `target`, so they join
with kube-state-metrics (`kube_deployment_spec_replicas{namespace, deployment}`) the way an HPA's
`kube_horizontalpodautoscaler_*` series do; the ServiceMonitor sets `honorLabels: true` (as
kube-state-metrics' does) so the workload's `namespace` is kept rather than renamed
`exported_namespace`. For the same reason no metric has a label named `job` or `instance`
(Prometheus' own target labels): periodic jobs are labelled `task`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from empire.errors import DbFailure

if TYPE_CHECKING:
    from empire.agent.types import Sample
    from empire.policies.scaling import Target

__all__ = ["TARGET_LABELS", "LoopMetrics"]

TARGET_LABELS = ("target", "namespace", "workload", "workload_kind")

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
        signal = [*TARGET_LABELS, "signal"]
        self.staleness = Gauge(
            "empire_observation_staleness_seconds", "Age of the newest sample of each signal", signal, registry=registry
        )
        self.signal_value = Gauge(
            "empire_signal_value", "The signal's current value (its query's result)", signal, registry=registry
        )
        self.signal_target = Gauge(
            "empire_signal_target", "The signal's target: per replica (type average) or per replica share (total)",
            signal, registry=registry,
        )  # fmt: skip
        self.source_up = Gauge(
            "empire_metric_source_up", "1 when every target's last observation through the source succeeded",
            ["source"], registry=registry,
        )  # fmt: skip
        self.leader = Gauge("empire_leader", "1 while this replica holds the leadership", registry=registry)
        self.desired = Gauge("empire_desired_replicas", "Desired replicas per target", TARGET_LABELS, registry=registry)
        self.current = Gauge("empire_current_replicas", "Current replicas per target", TARGET_LABELS, registry=registry)
        self.min_replicas = Gauge(
            "empire_min_replicas", "The target's min_replicas (as kube_horizontalpodautoscaler_spec_min_replicas)",
            TARGET_LABELS, registry=registry,
        )  # fmt: skip
        self.max_replicas = Gauge(
            "empire_max_replicas", "The target's max_replicas (as kube_horizontalpodautoscaler_spec_max_replicas)",
            TARGET_LABELS, registry=registry,
        )  # fmt: skip
        self.conflict = Gauge(
            "empire_target_conflict",
            "1 while another autoscaler (an HPA or a KEDA ScaledObject) targets the workload: not scaled",
            TARGET_LABELS, registry=registry,
        )  # fmt: skip
        self.policy_reloads = Counter(
            "empire_policy_reloads",
            "Policy file changes, by result (applied | rejected)",
            ["result"],
            registry=registry,
        )
        self.jobs = Counter(
            "empire_periodic_jobs", "Periodic job runs by task and result", ["task", "result"], registry=registry
        )
        self.state_db_up = Gauge(
            "empire_state_db_up", "1 while the state database can be written; 0: actions are held", registry=registry
        )
        self.state_db_failure = Gauge(
            "empire_state_db_failure", "1 for the reason the state database is down, 0 for the others",
            ["reason"], registry=registry,
        )  # fmt: skip
        self._series: dict[str, tuple[tuple[str, ...], set[str]]] = {}  # target -> (its labels, signals seen)

    def on_state_db(self, health: Any) -> None:
        """Follow a `StateHealth` (its `on_change`); every reason is exported, so the set is closed."""
        self.state_db_up.set(1 if health.up else 0)
        for reason in DbFailure:
            self.state_db_failure.labels(reason.value).set(1 if health.reason == reason else 0)

    def _labels(self, target: Target) -> tuple[str, ...]:
        wl = target.workload
        labels = (target.name, wl.namespace, wl.name, wl.kind)
        old = self._series.get(target.name)
        if old is not None and old[0] != labels:  # the workload moved: drop the old series
            self.forget_target(target.name)
        self._series.setdefault(target.name, (labels, set()))
        return labels

    def record_signal(self, target: Target, sample: Sample) -> None:
        """Staleness, value and target of one signal of `target`."""
        labels = (*self._labels(target), sample.signal)
        self._series[target.name][1].add(sample.signal)
        if sample.staleness is not None:
            self.staleness.labels(*labels).set(sample.staleness)
        if sample.value is not None:
            self.signal_value.labels(*labels).set(sample.value)
        spec = next((s for s in target.signals if s.name == sample.signal), None)
        if spec is not None:
            self.signal_target.labels(*labels).set(spec.target)

    def record_replicas(self, target: Target, current: int | None, desired: int | None, conflict: bool = False) -> None:
        """Current and desired replicas of `target`, with its min/max bounds and whether another
        autoscaler holds it."""
        labels = self._labels(target)
        self.conflict.labels(*labels).set(1 if conflict else 0)
        if current is not None:
            self.current.labels(*labels).set(current)
        if desired is not None:
            self.desired.labels(*labels).set(desired)
        self.min_replicas.labels(*labels).set(target.min_replicas)
        self.max_replicas.labels(*labels).set(target.max_replicas)

    def forget_target(self, target: str) -> None:
        """Drop per-target series for a target removed from the policy (or whose workload changed)."""
        labels, signals = self._series.pop(target, ((), set()))
        if not labels:
            return
        for gauge in (self.desired, self.current, self.min_replicas, self.max_replicas, self.conflict):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for name in signals:
            for gauge in (self.staleness, self.signal_value, self.signal_target):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels, name)
