"""Scaling targets: which workloads the agent scales, on which signals, how fast.

The shape follows the Kubernetes HPA v2 `behavior` API (scale-up/scale-down rules with a
stabilization window and rate policies) so that operators who know HPA read it at sight, and its
defaults are HPA's: tolerance 0.1, scale-up immediate (100 % or 4 pods per 15 s, whichever is
more), scale-down stabilized over 300 s. Predictive settings follow AWS predictive scaling's
vocabulary (`forecast_only`, `scheduling_buffer`, `max_capacity_breach`).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from empire.policies.common import Name, StrictModel
from empire.policies.durations import Duration
from empire.policies.errors import Issue, duplicate_name_issues, raise_issues, unknown_choice

__all__ = [
    "SEED_TARGETS",
    "Behavior",
    "FallbackMode",
    "FallbackPolicy",
    "PredictiveMode",
    "PredictivePolicy",
    "RatePolicy",
    "ScaleDownRules",
    "ScaleUpRules",
    "ScalingRules",
    "SelectPolicy",
    "Signal",
    "SignalType",
    "Target",
    "WorkloadRef",
]

SEED_TARGETS: dict[str, float] = {"cpu": 0.70, "memory": 0.80, "queue": 50.0, "response_time": 30.0}
"""Starting thresholds from the operation's runbook: CPU 70 %, memory 80 % of requests,
50 queued jobs per replica, 30 s response time. The shipped example policy uses them."""


class WorkloadRef(StrictModel):
    """The workload to scale: any resource with a scale subresource, found through API discovery and
    scaled through /scale, as HPA's scaleTargetRef. An unknown or unscalable kind is reported at run time."""

    kind: str = Field(
        default="Deployment",
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        max_length=63,
        description="workload kind: any resource with a scale subresource (Deployment, StatefulSet, ReplicaSet, "
        "Rollout, a custom resource)",
    )
    api_version: str | None = Field(
        default=None,
        pattern=r"^([a-z0-9]([a-z0-9.-]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$",
        description="group/version of the kind (apps/v1, argoproj.io/v1alpha1), to choose between kinds of the "
        "same name in several API groups; default: the kind in the core and apps groups first, else the "
        "group's preferred version that has it",
    )
    name: str = Field(min_length=1, description="workload name")
    namespace: str = Field(default="default", min_length=1, description="workload namespace")


class SignalType(StrEnum):
    average = "average"
    """The query returns a per-replica average or utilization (0.7 = 70 %):
    desired = ceil(current * value / target), HPA's Resource/Pods rule."""
    total = "total"
    """The query returns a total to be shared (queue length, requests/s):
    desired = ceil(value / target), HPA's External AverageValue rule."""


class Signal(StrictModel):
    """One metric the target scales on; the target takes the highest recommendation of its signals."""

    name: Name
    query: str = Field(min_length=1, description="PromQL instant query returning exactly one series")
    target: float = Field(gt=0, description="desired value per replica (see type)")
    type: SignalType = Field(
        default=SignalType.average,
        description="average: the query is a per-replica value, desired = ceil(current * value / target); "
        "total: the query is a total to share, desired = ceil(value / target)",
    )
    max_staleness: Duration = Field(
        default=timedelta(minutes=5),
        description="older samples count as missing: never scale down on them",
    )


class RatePolicyType(StrEnum):
    pods = "pods"
    percent = "percent"


class RatePolicy(StrictModel):
    """At most `value` pods (or percent of the current replicas) per `period`."""

    type: RatePolicyType = Field(description="pods: a count of pods; percent: a share of the current replicas")
    value: int = Field(gt=0, description="pods or percent allowed per period")
    period: Duration = Field(description="1s to 30m, like HPA's periodSeconds")

    @model_validator(mode="after")
    def _period_range(self) -> RatePolicy:
        if not timedelta(seconds=1) <= self.period <= timedelta(minutes=30):
            raise ValueError("period must be between 1s and 30m (HPA's periodSeconds range)")
        return self


class SelectPolicy(StrEnum):
    max = "max"
    min = "min"
    disabled = "disabled"


class ScalingRules(StrictModel):
    """The rules of one direction. The policy uses `ScaleUpRules` / `ScaleDownRules`, which differ
    only in their defaults: a partial block takes each missing field from its direction's default,
    as HPA's defaulting does (`behavior: {scale_down: {stabilization_window: 60s}}` keeps the
    scale-down rate policy)."""

    stabilization_window: Duration = Field(description="0s to 1h")
    select: SelectPolicy = Field(
        default=SelectPolicy.max,
        description="max: the policy allowing the largest change wins; min: the smallest; disabled: no change",
    )
    policies: tuple[RatePolicy, ...] = Field(default=(), description="rate limits, combined by select")

    @model_validator(mode="after")
    def _window_range(self) -> ScalingRules:
        if self.stabilization_window > timedelta(hours=1):
            raise ValueError("stabilization_window must be at most 1h (HPA's limit is 3600s)")
        if self.select != SelectPolicy.disabled and not self.policies:
            raise ValueError("policies must not be empty unless select is 'disabled'")
        return self


_HPA_PERIOD = timedelta(seconds=15)


class ScaleUpRules(ScalingRules):
    """scale_up, HPA's defaults: no window; double or +4 pods per 15 s, whichever is more."""

    stabilization_window: Duration = Field(default=timedelta(0), description="0s to 1h (default 0s: act at once)")
    policies: tuple[RatePolicy, ...] = Field(
        default=(
            RatePolicy(type=RatePolicyType.percent, value=100, period=_HPA_PERIOD),
            RatePolicy(type=RatePolicyType.pods, value=4, period=_HPA_PERIOD),
        ),
        description="default: 100 % or 4 pods per 15s",
    )


class ScaleDownRules(ScalingRules):
    """scale_down, HPA's defaults: keep the highest recommendation of the last 5m; then 100 % per 15 s."""

    stabilization_window: Duration = Field(default=timedelta(minutes=5), description="0s to 1h (default 5m)")
    policies: tuple[RatePolicy, ...] = Field(
        default=(RatePolicy(type=RatePolicyType.percent, value=100, period=_HPA_PERIOD),),
        description="default: 100 % per 15s",
    )


class Behavior(StrictModel):
    """HPA v2 `behavior`: each direction, and each field within it, defaults on its own."""

    scale_up: ScaleUpRules = Field(default_factory=ScaleUpRules)
    scale_down: ScaleDownRules = Field(default_factory=ScaleDownRules)


class PredictiveMode(StrEnum):
    off = "off"
    forecast_only = "forecast_only"
    forecast_and_scale = "forecast_and_scale"


class PredictivePolicy(StrictModel):
    """Scale ahead of demand forecast from the signal's history (AWS predictive scaling's vocabulary)."""

    mode: PredictiveMode = Field(
        default=PredictiveMode.off,
        description="off; forecast_only: forecast and export, never act on it; forecast_and_scale: also scale on it",
    )
    signal: Name | None = Field(
        default=None, description="signal whose demand is forecast (default: the first 'total' signal)"
    )
    horizon: Duration = Field(
        default=timedelta(hours=1),
        description=(
            "how far ahead the demand forecast looks for people and alert rules: a gradient-boosted model on "
            "the signal resampled to a step of about a twelfth of it (5m for 1h), exported as "
            "empire_forecast_horizon_demand, shown in /status and in each decision; predicted_breach rules on "
            "this signal read its path. Scaling does not act on it (see scheduling_buffer)"
        ),
    )
    quantile: float = Field(
        default=0.9, gt=0, lt=1, description="forecast quantile used for capacity (and read by predicted_breach rules)"
    )
    scheduling_buffer: Duration = Field(
        default=timedelta(minutes=2),
        description=(
            "how far ahead scaling forecasts: capacity is requested this long before it is needed (set it to the "
            "pods' start-up time); a short-term quantile model refitted every refit_every, fresh every tick"
        ),
    )
    target: float | None = Field(
        default=None,
        gt=0,
        description=(
            "demand one replica serves when provisioning for the forecast (default: the signal's target); "
            "set it to a replica's full capacity when `quantile` already supplies the headroom"
        ),
    )
    max_capacity_breach: Literal["honor", "increase_by_percent"] = Field(
        default="honor",
        description="honor: never above max_replicas; increase_by_percent: up to the forecast plus a buffer (AWS)",
    )
    max_capacity_buffer_percent: int = Field(
        default=10, ge=0, le=100, description="with increase_by_percent: effective max = forecast * (1 + buffer)"
    )
    history: Duration = Field(default=timedelta(days=14), description="history fetched to fit the models")
    evaluation_window: Duration = Field(
        default=timedelta(days=7),
        description=(
            "the guard compares, over this much recent live demand, reactive scaling with the forecast's variants "
            "(counterfactual shadows); the forecast acts only through a variant that had fewer under-provisioned "
            "minutes at no more replica-hours"
        ),
    )
    min_evaluation: Duration = Field(
        default=timedelta(hours=12),
        description="live demand the guard must have seen before the forecast may act (reactive scaling until then)",
    )
    refit_every: Duration = Field(
        default=timedelta(hours=6), description="refit both models (scheduling_buffer and horizon) this often"
    )


class FallbackMode(StrEnum):
    hold = "hold"
    fixed = "fixed"


class FallbackPolicy(StrictModel):
    """What to do when the metric source itself is unreachable (not when one value is odd).

    Safe by default, as HPA is: `hold` keeps the current count. A `fixed` count is a *floor* while
    the source is down: it may raise replicas, but lowers them only with `allow_scale_down: true`,
    and then through the scale-down stabilization window and rate policies like any scale-down (a
    Prometheus outage must never take a busy workload from 12 replicas to 4 in one step)."""

    mode: FallbackMode = Field(
        default=FallbackMode.hold, description="hold: keep the current count; fixed: at least `replicas`"
    )
    replicas: int | None = Field(default=None, ge=1, description="with mode 'fixed'")
    after_failures: int = Field(default=3, ge=1, description="consecutive failed observations")
    allow_scale_down: bool = Field(
        default=False,
        description="with mode 'fixed': may go below the current count (through the scale-down window and policies)",
    )

    @model_validator(mode="after")
    def _replicas_for_fixed(self) -> FallbackPolicy:
        if self.mode == FallbackMode.fixed and self.replicas is None:
            raise_issues([Issue("replicas", "required when mode is 'fixed'")])
        return self


class Target(StrictModel):
    """A workload the agent scales: HPA v2 semantics, optionally ahead of a forecast."""

    name: Name
    workload: WorkloadRef
    min_replicas: int = Field(default=1, ge=0, description="never fewer replicas (at most max_replicas)")
    max_replicas: int = Field(ge=1, description="never more replicas")
    signals: tuple[Signal, ...] = Field(
        min_length=1, max_length=20, description="metrics to scale on; the highest recommendation wins"
    )
    tolerance: float = Field(default=0.1, ge=0, lt=1, description="dead band around the target ratio")
    behavior: Behavior = Field(default_factory=Behavior)
    predictive: PredictivePolicy = Field(default_factory=PredictivePolicy)
    fallback: FallbackPolicy = Field(default_factory=FallbackPolicy)
    paused: bool = Field(default=False, description="decide and journal, never act")
    pin_replicas: int | None = Field(default=None, ge=0, description="hold exactly this many replicas")
    startup_grace: Duration = Field(
        default=timedelta(seconds=30), description="ignore signals of pods younger than this"
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Target:
        issues: list[Issue] = []
        if self.min_replicas > self.max_replicas:
            issues.append(Issue("min_replicas", f"{self.min_replicas} is above max_replicas ({self.max_replicas})"))
        names = [s.name for s in self.signals]
        issues.extend(duplicate_name_issues("signals", names))
        if self.predictive.signal is not None and self.predictive.signal not in names:
            issues.append(
                Issue("predictive.signal", unknown_choice("signal", self.predictive.signal, names, of="this target"))
            )
        span = f"{self.min_replicas}..{self.max_replicas}"
        if self.pin_replicas is not None and not self.min_replicas <= self.pin_replicas <= self.max_replicas:
            issues.append(Issue("pin_replicas", f"must lie within min_replicas..max_replicas ({span})"))
        if self.fallback.replicas is not None and not self.min_replicas <= self.fallback.replicas <= self.max_replicas:
            issues.append(Issue("fallback.replicas", f"must lie within min_replicas..max_replicas ({span})"))
        if issues:
            raise_issues(issues)
        return self

    def demand_signal(self) -> Signal | None:
        """The signal predictive scaling forecasts: the named one, else the first `total` one."""
        if self.predictive.signal is not None:
            return next(s for s in self.signals if s.name == self.predictive.signal)
        return next((s for s in self.signals if s.type == SignalType.total), None)
