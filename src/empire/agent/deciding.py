"""`recommend()` and `decide()`: from an Observation to a Decision. PURE: `now` is an argument.

Stage 1, `recommend()`: each signal proposes a replica count the way HPA's replica calculator
does (`average`: ceil(current * value / target); `total`: ceil(value / target); a ratio within
`tolerance` of 1 keeps `current`), and the recommendation is the max over signals. Then the
safety rules, learnt from what KEDA and HPA users complain about:

* a signal that is missing, stale (older than its `max_staleness`) or invalid (NaN, inf,
  negative, several series) never scales down and never scales to zero: the other signals may
  still scale *up*, otherwise the target holds;
* the metric source itself unreachable: hold, and after `fallback.after_failures` consecutive
  failures the configured fallback fires (`hold` current, or `fixed` replicas), named as such. A
  `fixed` count is a floor unless `allow_scale_down` is set, and goes through stabilization either
  way: missing metrics never skip the scale-down window (HPA holds the current count);
* `pin_replicas` (policy, or the workload annotation `empire.io/pin-replicas`) names the exact
  count; `paused` (policy, or `empire.io/paused: "true"`) decides and journals but never acts;
* another autoscaler (an HPA or a KEDA ScaledObject, `Observation.conflicts`) targeting the workload:
  decided and journaled with reason `conflict` (`would_scale_to` in the details), never acted on,
  as HPA refuses to share a workload with another HPA; acting resumes when it is gone;
* startup grace: within `startup_grace` after a scale-up, per-replica `average` signals are
  ignored (new pods warming up distort them, HPA's cpu-initialization-period) and nothing scales
  down; `total` signals may still scale up;
* predictive scaling (`predictive.mode`): the forecast's replicas are `ceil(forecast / target)`
  (`predictive.target`, default the signal's). It acts only when the predictive guard vouches for it
  (`Forecast.gate` trusted: on this workload's recent demand it beat reactive scaling, see
  `empire.agent.guard`); then, with `forecast_and_scale`, the recommendation is max(reactive,
  predictive) (`predicted_demand`): **never below what reactive scaling at the policy's own target
  asks for**, and the guard's scale-down window (never longer than the policy's) lets stage 2 scale
  down sooner. Not vouched for: the forecast is recorded (`would_scale_to`) with the reason
  (`forecast_unproven`, `forecast_skill_lost`) and reactive scaling alone decides; with
  `forecast_only` nothing changes either (`forecast_only`). Above
  `max_replicas`, `honor` clamps; `increase_by_percent` lets the ceiling rise to the forecast plus
  `max_capacity_buffer_percent` of it (`max_capacity_breach`), as AWS predictive scaling does.

Stage 2 is `stabilizing.stabilize()`. `decide()` composes both and builds the `ScaleTo` action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from empire.agent.stabilizing import TargetHistory, history_keep, stabilize
from empire.agent.types import (
    Decision,
    Forecast,
    ForecastGate,
    Observation,
    Reason,
    Recommendation,
    SampleStatus,
    ScaleTo,
    SignalEstimate,
)
from empire.policies.scaling import FallbackMode, PredictiveMode, Signal, SignalType, Target

__all__ = [
    "ANNOTATION_PAUSED",
    "ANNOTATION_PIN",
    "Decided",
    "decide",
    "is_paused",
    "pinned_replicas",
    "recommend",
    "total_replicas",
]

ANNOTATION_PAUSED = "empire.io/paused"
ANNOTATION_PIN = "empire.io/pin-replicas"

_GATE_REASON = {
    ForecastGate.unproven: Reason.forecast_unproven,
    ForecastGate.skill_lost: Reason.forecast_skill_lost,
}

_STATUS_REASON = {
    SampleStatus.missing: Reason.signal_missing,
    SampleStatus.stale: Reason.signal_stale,
    SampleStatus.invalid: Reason.signal_invalid,
}


def _annotation_pin(annotations: dict[str, str]) -> int | None:
    raw = annotations.get(ANNOTATION_PIN)
    if raw is None or not raw.strip().isdecimal():
        return None  # a malformed annotation is ignored rather than acted on
    return int(raw.strip())


def pinned_replicas(target: Target, annotations: dict[str, str]) -> int | None:
    """The exact replica count the workload annotation (first) or the policy pins, else None."""
    pin = _annotation_pin(annotations)
    return pin if pin is not None else target.pin_replicas


def is_paused(target: Target, annotations: dict[str, str]) -> bool:
    """Paused by the policy or by the workload annotation (`"true"`, `"1"` or `"yes"`)."""
    return target.paused or annotations.get(ANNOTATION_PAUSED, "").strip().lower() in ("true", "1", "yes")


def _signal_replicas(signal: Signal, value: float, current: int, tolerance: float) -> tuple[int | None, float, bool]:
    """HPA's per-metric replica count: (replicas or None, usage ratio, within tolerance)."""
    if signal.type == SignalType.average:
        if current <= 0:
            return None, math.nan, False  # no pods to average over: HPA does not scale from zero
        ratio = value / signal.target
        if abs(1.0 - ratio) <= tolerance:
            return current, ratio, True
        return math.ceil(current * ratio), ratio, False
    ratio = value / (signal.target * current) if current > 0 else math.inf
    if current > 0 and abs(1.0 - ratio) <= tolerance:
        return current, ratio, True
    return math.ceil(value / signal.target), ratio, False


def _estimate(signal: Signal, obs: Observation, current: int, tolerance: float, grace: bool) -> SignalEstimate:
    sample = obs.sample(signal.name)
    common: dict[str, Any] = {"signal": signal.name, "target": signal.target, "type": signal.type.value}
    if sample is None:
        return SignalEstimate(**common, value=None, status=SampleStatus.missing, replicas=None)
    status = sample.status
    value = sample.value
    if status == SampleStatus.ok:
        if value is None:
            status = SampleStatus.missing
        elif not math.isfinite(value) or value < 0:
            status = SampleStatus.invalid
        elif sample.staleness is not None and sample.staleness > signal.max_staleness.total_seconds():
            status = SampleStatus.stale
    if status != SampleStatus.ok or value is None:
        return SignalEstimate(**common, value=value, status=status, replicas=None, staleness=sample.staleness)
    if grace and signal.type == SignalType.average:
        return SignalEstimate(**common, value=value, status=status, replicas=None, staleness=sample.staleness)
    replicas, ratio, within = _signal_replicas(signal, value, current, tolerance)
    return SignalEstimate(
        **common, value=value, status=status, replicas=replicas, ratio=None if math.isnan(ratio) else ratio,
        within_tolerance=within, staleness=sample.staleness,
    )  # fmt: skip


def total_replicas(target: Target, signal: Signal, demand: float) -> int:
    """Replicas a forecast `demand` of a `total` signal needs: one per `predictive.target` (default
    the signal's target), rounded up."""
    per_replica = target.predictive.target or signal.target
    return math.ceil(demand / per_replica - 1e-9)  # 70.0 / 7.0 is 10, not 11 after float noise


def _forecast_replicas(target: Target, forecast: Forecast, current: int) -> int | None:
    signal = next((s for s in target.signals if s.name == forecast.signal), None)
    if signal is None or not math.isfinite(forecast.value) or forecast.value < 0:
        return None
    if signal.type == SignalType.total:
        return total_replicas(target, signal, forecast.value)
    per_replica = target.predictive.target or signal.target
    return math.ceil(current * forecast.value / per_replica) if current > 0 else None


def _breach_ceiling(target: Target, forecast_replicas: int) -> int:
    """AWS `MaxCapacityBreachBehavior: IncreaseMaxCapacity`: the effective maximum is the forecast
    capacity plus `max_capacity_buffer_percent` of it, when that exceeds `max_replicas`."""
    buffer = target.predictive.max_capacity_buffer_percent
    return max(target.max_replicas, math.ceil(forecast_replicas * (1 + buffer / 100) - 1e-9))


def recommend(
    target: Target,
    obs: Observation,
    history: TargetHistory,
    now: datetime,
    forecast: Forecast | None = None,
) -> Recommendation:
    """Stage 1: the raw recommendation with its reasons. See the module docstring for the rules."""
    current = obs.current_replicas
    paused = is_paused(target, obs.annotations)
    tail = (Reason.paused,) if paused else ()
    base: dict[str, Any] = {"target": target.name, "at": now, "current": current, "paused": paused}
    if current is None:
        return Recommendation(**base, replicas=None, reasons=(Reason.workload_unknown, *tail), hold=True)

    pin = pinned_replicas(target, obs.annotations)
    if pin is not None:
        return Recommendation(
            **base, replicas=pin, reasons=(Reason.pinned, *tail), bypass_stabilization=True, details={"pin": pin}
        )

    if not obs.source_ok:
        failures = history.failures + 1
        details = {"failures": failures, "after_failures": target.fallback.after_failures, "error": obs.source_error}
        if failures < target.fallback.after_failures:
            return Recommendation(
                **base, replicas=current, reasons=(Reason.metrics_unavailable, *tail), hold=True, details=details
            )
        if target.fallback.mode == FallbackMode.fixed and target.fallback.replicas is not None:
            fixed = target.fallback.replicas
            why: tuple[Reason, ...] = (Reason.metrics_unavailable, Reason.fallback_fixed)
            if fixed < current and not target.fallback.allow_scale_down:
                fixed, why = current, (*why, Reason.scale_down_blocked)  # a floor, not a target
            # Not bypass_stabilization: a fixed count goes through the windows and rate policies.
            return Recommendation(**base, replicas=fixed, details=details, reasons=(*why, *tail))
        return Recommendation(
            **base, replicas=current, hold=True, details=details,
            reasons=(Reason.metrics_unavailable, Reason.fallback_hold, *tail),
        )  # fmt: skip

    grace = (
        history.last_scale_up_at is not None
        and target.startup_grace.total_seconds() > 0
        and now - history.last_scale_up_at < target.startup_grace
    )
    estimates = tuple(_estimate(s, obs, current, target.tolerance, grace) for s in target.signals)
    bad = [e for e in estimates if e.status != SampleStatus.ok]
    bad_reasons = tuple(dict.fromkeys(_STATUS_REASON[e.status] for e in bad))
    proposals = [e.replicas for e in estimates if e.replicas is not None]
    if not proposals:
        reasons = bad_reasons or ((Reason.startup_grace,) if grace else (Reason.no_change,))
        return Recommendation(**base, replicas=current, reasons=(*reasons, *tail), estimates=estimates, hold=True)

    raw = max(proposals)
    reasons: list[Reason] = []
    if raw > current:
        reasons.append(Reason.above_target)
    elif raw < current:
        reasons.append(Reason.below_target)
    elif any(e.within_tolerance for e in estimates):
        reasons.append(Reason.within_tolerance)

    details: dict[str, Any] = {}
    forecast_replicas = None
    max_allowed = target.max_replicas
    scale_down_window = None
    if forecast is not None and target.predictive.mode != PredictiveMode.off:
        forecast_replicas = _forecast_replicas(target, forecast, current)
        details["forecast"] = {**forecast.details, "signal": forecast.signal, "value": forecast.value,
                               "quantile": forecast.quantile, "horizon_seconds": forecast.horizon_seconds,
                               "replicas": forecast_replicas, "gate": forecast.gate.value}  # fmt: skip
        breach = target.predictive.max_capacity_breach == "increase_by_percent"
        scale = target.predictive.mode == PredictiveMode.forecast_and_scale
        acts = scale and forecast.gate == ForecastGate.trusted
        if scale and not acts:  # the guard has not vouched for it: reactive scaling alone decides
            reasons.append(_GATE_REASON[forecast.gate])
        if forecast_replicas is not None:
            ceiling = _breach_ceiling(target, forecast_replicas) if breach else target.max_replicas
            if acts and forecast_replicas > raw:
                raw = forecast_replicas
                reasons = [r for r in reasons if r != Reason.below_target] + [Reason.predicted_demand]
            elif not acts and forecast_replicas > raw:  # record what it would do, act on nothing
                details["forecast"]["would_scale_to"] = max(target.min_replicas, min(forecast_replicas, ceiling))
                if not scale:
                    reasons.append(Reason.forecast_only)
            if acts and ceiling > target.max_replicas:
                max_allowed = ceiling  # the reactive signals may use the raised ceiling too (AWS)
                if raw > target.max_replicas:
                    reasons.append(Reason.max_capacity_breach)
        if acts and forecast.scale_down_window is not None:
            scale_down_window = forecast.scale_down_window

    if bad or grace:
        reasons.extend(bad_reasons)
        if grace:
            reasons.append(Reason.startup_grace)
        if raw < current:
            raw = current
            reasons = [r for r in reasons if r != Reason.below_target] + [Reason.scale_down_blocked]
    return Recommendation(
        **base, replicas=raw, reasons=(*reasons, *tail), estimates=estimates, forecast_replicas=forecast_replicas,
        max_allowed=max_allowed, scale_down_window=scale_down_window, details=details,
    )  # fmt: skip


@dataclass(frozen=True)
class Decided:
    """`decide()`'s result: the Decision and the target's history after it."""

    decision: Decision
    recommendation: Recommendation
    history: TargetHistory


def _estimate_details(e: SignalEstimate) -> dict[str, Any]:
    out: dict[str, Any] = {"value": e.value, "target": e.target, "type": e.type, "status": e.status.value,
                           "replicas": e.replicas}  # fmt: skip
    if e.ratio is not None and math.isfinite(e.ratio):
        out["ratio"] = round(e.ratio, 4)
    if e.staleness is not None:
        out["staleness"] = round(e.staleness, 3)
    if e.within_tolerance:
        out["within_tolerance"] = True
    return out


def decide(
    target: Target,
    obs: Observation,
    history: TargetHistory,
    now: datetime,
    forecast: Forecast | None = None,
    dry_run: bool = False,
) -> Decided:
    """Recommend, stabilize, and turn the result into a Decision (with a `ScaleTo` when it changes)."""
    rec = recommend(target, obs, history, now, forecast)
    failures = 0 if obs.source_ok else history.failures + 1
    history = history.with_failures(failures)
    st = stabilize(target, rec, history, now)
    reasons = [r for r in rec.reasons if r != Reason.paused] + list(st.reasons)
    current = rec.current
    desired = st.desired if current is not None else None
    actions: tuple[ScaleTo, ...] = ()
    if obs.conflicts:  # another autoscaler owns spec.replicas: decide and journal, never write it
        desired = current
        reasons.append(Reason.conflict)
    if current is not None and desired is not None and desired != current:
        wl = target.workload
        if rec.paused:
            reasons.append(Reason.paused)  # the runner journals the action as skipped: paused
        actions = (
            ScaleTo(target.name, wl.namespace, wl.kind, wl.name, desired, current, tuple(reasons), wl.api_version),
        )
    else:
        if current is not None and Reason.no_change not in reasons:
            reasons.append(Reason.no_change)
        if rec.paused:
            reasons.append(Reason.paused)
    details: dict[str, Any] = {"signals": {e.signal: _estimate_details(e) for e in rec.estimates}}
    details.update(rec.details)
    if st.details:
        details["stabilization"] = st.details
    if rec.forecast_replicas is not None:
        details["forecast_replicas"] = rec.forecast_replicas
    if failures:
        details["source_failures"] = failures
    if obs.ready_replicas is not None:
        details["ready"] = obs.ready_replicas
    if obs.conflicts:
        details["conflicts"] = list(obs.conflicts)
        details["would_scale_to"] = st.desired
    decision = Decision(
        target=target.name, at=now, current=current, recommended=rec.replicas, desired=desired,
        reasons=tuple(reasons), actions=actions, details=details, dry_run=dry_run,
    )  # fmt: skip
    return Decided(decision, rec, st.history)


def keep_for(target: Target) -> tuple[float, float]:
    """Seconds of recommendations and scale events the history must keep (for restoring it)."""
    window, period = history_keep(target)
    return window.total_seconds(), period.total_seconds()
