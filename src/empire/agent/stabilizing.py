"""`stabilize()`: HPA v2 `behavior` semantics, exactly, as a pure function of (policy, history, now).

This reproduces `normalizeDesiredReplicasWithBehaviors` of the Kubernetes HPA controller
(`pkg/controller/podautoscaler/horizontal.go`), so an operator who knows HPA can predict us:

1. Current replicas outside `min..max` are brought inside first (HPA: "Current number of replicas
   above Spec.MaxReplicas"), whatever the signals say: `clamped_max` / `clamped_min`.
2. Stabilization window: over the recommendations of the last `scale_up.stabilization_window`,
   the *lowest* bounds a scale-up; over the last `scale_down.stabilization_window`, the *highest*
   bounds a scale-down. Both windows include the current raw recommendation. The result is
   `clamp(current, lowest_up, highest_down)` (HPA's upRecommendation / downRecommendation). The
   raw recommendation is then recorded in the history (HPA records the unstabilized value). When
   the history is empty, `current` is recorded first at `now` (HPA's initial recommendation), so a
   restart never scales down before the window has seen real data. A trusted forecast may bring a
   shorter scale-down window (`Recommendation.scale_down_window`, from the predictive guard): a
   scale-down it allows before the policy's window would have is named `early_scale_down`.
3. Rate policies: per policy, the replicas at the start of its period are `current - added + removed`
   by the scale events of the last `period`; a `pods` policy allows +/- value from there, a
   `percent` policy `ceil(start * (1 + v/100))` up or `floor(start * (1 - v/100))` down. `select:
   max` takes the policy allowing the biggest change, `min` the smallest, `disabled` none.
4. `min_replicas` / `max_replicas` clamp last (inside the rate step, as HPA does).

Every step that changes the number names its `Reason`. Windows compare with a strict "after the
cutoff", as HPA's `timestamp.After(cutoff)` does, which matters in the table tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from empire.agent.types import Reason, Recommendation
from empire.policies.scaling import RatePolicyType, ScalingRules, SelectPolicy, Target

__all__ = ["ScaleEvent", "Stabilized", "TargetHistory", "scale_down_limit", "scale_up_limit", "stabilize"]


@dataclass(frozen=True)
class ScaleEvent:
    """A change applied to the workload: `change` > 0 added replicas, < 0 removed them."""

    at: datetime
    change: int


@dataclass(frozen=True)
class TargetHistory:
    """What stabilization remembers per target. Immutable: every update returns a new value, so the
    loop's state, the backtest's and a restart's (rebuilt from the journal) are the same thing."""

    recommendations: tuple[tuple[datetime, int], ...] = ()
    events: tuple[ScaleEvent, ...] = ()
    failures: int = 0  # consecutive observations whose metric source failed
    last_scale_up_at: datetime | None = None

    def record(self, at: datetime, replicas: int, keep: timedelta) -> TargetHistory:
        cutoff = at - keep
        recs = (*(r for r in self.recommendations if r[0] > cutoff), (at, replicas))
        return replace(self, recommendations=recs)

    def scaled(self, at: datetime, previous: int, new: int, keep: timedelta) -> TargetHistory:
        """Record an applied change (only applied ones: HPA stores a scale event after the update)."""
        if new == previous:
            return self
        cutoff = at - keep
        events = (*(e for e in self.events if e.at > cutoff), ScaleEvent(at, new - previous))
        up = at if new > previous else self.last_scale_up_at
        return replace(self, events=events, last_scale_up_at=up)

    def with_failures(self, failures: int) -> TargetHistory:
        return self if failures == self.failures else replace(self, failures=failures)


@dataclass(frozen=True)
class Stabilized:
    desired: int
    reasons: tuple[Reason, ...]
    history: TargetHistory
    details: dict[str, Any] = field(default_factory=dict)


def _changes(events: tuple[ScaleEvent, ...], period: timedelta, now: datetime) -> tuple[int, int]:
    cutoff = now - period
    added = sum(e.change for e in events if e.at > cutoff and e.change > 0)
    removed = sum(-e.change for e in events if e.at > cutoff and e.change < 0)
    return added, removed


def scale_up_limit(current: int, events: tuple[ScaleEvent, ...], rules: ScalingRules, now: datetime) -> int:
    """HPA `calculateScaleUpLimitWithScalingRules`."""
    if rules.select == SelectPolicy.disabled:
        return current
    pick = min if rules.select == SelectPolicy.min else max
    result: int | None = None
    for policy in rules.policies:
        added, removed = _changes(events, policy.period, now)
        start = current - added + removed
        if policy.type == RatePolicyType.pods:
            proposed = start + policy.value
        else:
            proposed = math.ceil(start * (1 + policy.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(current: int, events: tuple[ScaleEvent, ...], rules: ScalingRules, now: datetime) -> int:
    """HPA `calculateScaleDownLimitWithBehaviors`."""
    if rules.select == SelectPolicy.disabled:
        return current
    pick = max if rules.select == SelectPolicy.min else min
    result: int | None = None
    for policy in rules.policies:
        added, removed = _changes(events, policy.period, now)
        start = current - added + removed
        pods = policy.type == RatePolicyType.pods
        proposed = start - policy.value if pods else int(start * (1 - policy.value / 100))  # Go's int32(): truncation
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def history_keep(target: Target) -> tuple[timedelta, timedelta]:
    """How long recommendations and scale events must be kept for this target's behavior."""
    b = target.behavior
    window = max(b.scale_up.stabilization_window, b.scale_down.stabilization_window)
    periods = [p.period for p in (*b.scale_up.policies, *b.scale_down.policies)]
    return window, max(periods, default=timedelta(0))


def _clamp(value: int, lo: int, hi: int) -> tuple[int, tuple[Reason, ...]]:
    if value > hi:
        return hi, (Reason.clamped_max,)
    if value < lo:
        return lo, (Reason.clamped_min,)
    return value, ()


def stabilize(target: Target, rec: Recommendation, history: TargetHistory, now: datetime) -> Stabilized:
    """Bring a raw recommendation through windows, rate policies and clamps. Pure."""
    current = rec.current
    lo, hi = target.min_replicas, rec.max_allowed if rec.max_allowed is not None else target.max_replicas
    if current is None:  # nothing known about the workload: nothing can be decided
        return Stabilized(desired=rec.replicas or 0, reasons=(), history=history)
    if current > hi:
        return Stabilized(hi, (Reason.clamped_max,), history, {"rule": "current above max_replicas"})
    if current < lo:
        return Stabilized(lo, (Reason.clamped_min,), history, {"rule": "current below min_replicas"})
    if rec.hold or rec.replicas is None:
        return Stabilized(current, (), history)
    raw = rec.replicas
    window, _ = history_keep(target)
    if not history.recommendations:
        history = history.record(now, current, window)  # HPA's initial recommendation
    if rec.bypass_stabilization:
        desired, reasons = _clamp(raw, lo, hi)
        return Stabilized(desired, reasons, history.record(now, raw, window), {"bypass": True})

    up_rules, down_rules = target.behavior.scale_up, target.behavior.scale_down
    up_cutoff = now - up_rules.stabilization_window
    down_cutoff = now - down_rules.stabilization_window
    early_cutoff = down_cutoff
    if rec.scale_down_window is not None:  # a trusted forecast's window: never longer than the policy's
        early_cutoff = max(down_cutoff, now - timedelta(seconds=rec.scale_down_window))
    up_rec = down_rec = policy_down = raw
    for at, replicas in history.recommendations:
        if at > up_cutoff:
            up_rec = min(up_rec, replicas)
        if at > early_cutoff:
            down_rec = max(down_rec, replicas)
        if at > down_cutoff:
            policy_down = max(policy_down, replicas)
    stabilized = min(max(current, up_rec), down_rec)
    reasons: list[Reason] = []
    if stabilized != raw:
        reasons.append(Reason.stabilized_up if raw > current else Reason.stabilized_down)
    if stabilized < min(max(current, up_rec), policy_down):
        reasons.append(Reason.early_scale_down)
    details: dict[str, Any] = {"window_up_min": up_rec, "window_down_max": down_rec, "stabilized": stabilized}
    if rec.scale_down_window is not None:
        details["scale_down_window"] = rec.scale_down_window

    desired = stabilized
    if stabilized > current:
        limit = max(scale_up_limit(current, history.events, up_rules, now), current)
        details["scale_up_limit"] = limit
        if hi > limit:
            allowed = limit
            limiting = Reason.scaling_disabled if up_rules.select == SelectPolicy.disabled else Reason.rate_limited_up
        else:
            allowed, limiting = hi, Reason.clamped_max
        if stabilized > allowed:
            desired = allowed
            reasons.append(limiting)
    elif stabilized < current:
        limit = min(scale_down_limit(current, history.events, down_rules, now), current)
        details["scale_down_limit"] = limit
        if lo < limit:
            allowed = limit
            limiting = (
                Reason.scaling_disabled if down_rules.select == SelectPolicy.disabled else Reason.rate_limited_down
            )
        else:
            allowed, limiting = lo, Reason.clamped_min
        if stabilized < allowed:
            desired = allowed
            reasons.append(limiting)
    return Stabilized(desired, tuple(reasons), history.record(now, raw, window), details)
