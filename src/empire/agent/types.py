"""The agent's vocabulary: actions it can take and the reasons it gives. PURE: values only.

Every action carries the `Reason`s that produced it, and `Reason` is a closed enum: the same value
reaches the log line, the `reason` label of the metrics (a closed label set), the journal row in
the state DB and the EmpireConfig status, so "why did it do that?" has one answer everywhere.
Add a member here when a new rule can change an outcome; never pass free text as a reason (free
text goes in `details`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

__all__ = ["Action", "Alert", "Generate", "Reason", "Retier", "ScaleTo", "action_key"]


class Reason(StrEnum):
    # -- scaling: the raw recommendation
    above_target = "above_target"  # a signal over its target asked for more replicas
    below_target = "below_target"  # every signal under target: fewer replicas
    within_tolerance = "within_tolerance"  # ratio inside the dead band: keep current
    predicted_demand = "predicted_demand"  # the forecast asked for more than the reactive signals
    # -- scaling: safety rules
    signal_missing = "signal_missing"  # no value: never scale down on it
    signal_stale = "signal_stale"
    signal_invalid = "signal_invalid"  # NaN, inf, negative
    scale_down_blocked = "scale_down_blocked"  # a bad signal forbade scaling down
    metrics_unavailable = "metrics_unavailable"  # the metric source itself failed
    fallback_hold = "fallback_hold"
    fallback_fixed = "fallback_fixed"
    paused = "paused"
    pinned = "pinned"
    startup_grace = "startup_grace"
    # -- scaling: stabilization (HPA behavior)
    stabilized_up = "stabilized_up"  # scale-up window held the recommendation down
    stabilized_down = "stabilized_down"  # scale-down window held it up
    rate_limited_up = "rate_limited_up"
    rate_limited_down = "rate_limited_down"
    scaling_disabled = "scaling_disabled"  # select: disabled in that direction
    clamped_min = "clamped_min"
    clamped_max = "clamped_max"
    max_capacity_breach = "max_capacity_breach"  # forecast above max_replicas, buffer allowed
    no_change = "no_change"
    # -- execution
    dry_run = "dry_run"
    not_leader = "not_leader"
    # -- generation
    release_cadence = "release_cadence"
    trend_boost = "trend_boost"
    budget_deferred = "budget_deferred"
    budget_exhausted = "budget_exhausted"
    persona_paused = "persona_paused"
    # -- storage tiering
    idle_demotion = "idle_demotion"
    access_promotion = "access_promotion"
    # -- alerting and remediation
    anomaly = "anomaly"
    threshold = "threshold"
    predicted_breach = "predicted_breach"
    remediation = "remediation"
    # -- operator / manual
    manual = "manual"


def action_key(kind: str, subject: str, at: datetime, extra: str = "") -> str:
    """A deterministic idempotency key: the same decision at the same instant yields the same key,
    so a replayed or raced intent is recognised as a duplicate by the journal."""
    stamp = at.strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{kind}:{subject}:{stamp}" + (f":{extra}" if extra else "")


@dataclass(frozen=True)
class ScaleTo:
    """Set a workload's replicas."""

    kind: ClassVar[str] = "scale"
    target: str
    namespace: str
    workload_kind: str  # Deployment | StatefulSet
    workload_name: str
    replicas: int
    current: int | None
    reasons: tuple[Reason, ...]

    @property
    def subject(self) -> str:
        return self.target

    def params(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "workload_kind": self.workload_kind,
            "workload_name": self.workload_name, "replicas": self.replicas, "current": self.current,
        }  # fmt: skip


@dataclass(frozen=True)
class Generate:
    """Queue generation jobs for a persona."""

    kind: ClassVar[str] = "generate"
    persona: str
    count: int
    priority: str  # high | normal | low
    reasons: tuple[Reason, ...]
    providers: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return f"persona/{self.persona}"

    def params(self) -> dict[str, Any]:
        return {"count": self.count, "priority": self.priority, "providers": list(self.providers),
                "genres": list(self.genres)}  # fmt: skip


@dataclass(frozen=True)
class Retier:
    """Move one content object to another storage tier."""

    kind: ClassVar[str] = "retier"
    object_id: str
    from_tier: str
    to_tier: str
    size: int
    reasons: tuple[Reason, ...]
    monthly_saving: float = 0.0

    @property
    def subject(self) -> str:
        return f"object/{self.object_id}"

    def params(self) -> dict[str, Any]:
        return {"from_tier": self.from_tier, "to_tier": self.to_tier, "size": self.size,
                "monthly_saving": self.monthly_saving}  # fmt: skip


@dataclass(frozen=True)
class Alert:
    """Raise (or resolve) an alert."""

    kind: ClassVar[str] = "alert"
    rule: str
    severity: str  # critical | warning | info
    labels: dict[str, str]
    summary: str
    reasons: tuple[Reason, ...]
    value: float | None = None
    resolved: bool = False
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"alert/{self.rule}/" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    def params(self) -> dict[str, Any]:
        return {"severity": self.severity, "labels": self.labels, "summary": self.summary,
                "value": self.value, "resolved": self.resolved}  # fmt: skip


Action = ScaleTo | Generate | Retier | Alert
"""Everything the agent can do. Executors dispatch on the type."""
