"""`recommend()`/`decide()`: HPA's per-signal rule, tolerance, and the safety rules."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from empire.agent.deciding import ANNOTATION_PAUSED, ANNOTATION_PIN, decide, recommend
from empire.agent.stabilizing import TargetHistory
from empire.agent.types import Forecast, ForecastGate, Observation, Reason, Sample, SampleStatus, ScaleTo
from empire.policies.scaling import Target

TRUSTED = ForecastGate.trusted  # what the predictive guard says once a forecast has earned it

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
R = Reason
FAST = {  # no windows, generous rates: isolates stage 1
    "scale_up": {"stabilization_window": "0s", "policies": [{"type": "pods", "value": 100, "period": "15s"}]},
    "scale_down": {"stabilization_window": "0s", "policies": [{"type": "percent", "value": 100, "period": "15s"}]},
}


def target(**kw: Any) -> Target:
    body: dict[str, Any] = {
        "name": "gen", "workload": {"name": "gen", "namespace": "music"}, "min_replicas": 1, "max_replicas": 50,
        "signals": [
            {"name": "queue", "query": "sum(q)", "type": "total", "target": 50},
            {"name": "cpu", "query": "avg(c)", "type": "average", "target": 0.7, "max_staleness": "2m"},
        ],
        "behavior": FAST,
    }  # fmt: skip
    body.update(kw)
    return Target.model_validate(body)


def obs(current: int | None = 4, source_ok: bool = True, annotations: dict | None = None, **values: Any) -> Observation:
    samples = []
    for name, v in values.items():
        if isinstance(v, Sample):
            samples.append(v)
        else:
            samples.append(Sample(name, v, NOW, 0.0))
    return Observation("gen", NOW, tuple(samples), current, source_ok=source_ok,
                       source_error=None if source_ok else "connection refused", annotations=annotations or {})  # fmt: skip


def test_max_over_signals_hpa_rules():
    r = recommend(target(), obs(queue=400, cpu=0.7), TargetHistory(), NOW)
    assert (r.replicas, r.reasons) == (8, (R.above_target,))  # ceil(400/50) beats cpu within tolerance
    r = recommend(target(), obs(queue=100, cpu=1.4), TargetHistory(), NOW)
    assert r.replicas == 8  # ceil(4 * 1.4/0.7)


def test_tolerance_dead_band_keeps_current():
    r = recommend(target(), obs(queue=210, cpu=0.74), TargetHistory(), NOW)  # 210/(50*4)=1.05, 0.74/0.7=1.057
    assert (r.replicas, r.reasons) == (4, (R.within_tolerance,))


def test_scale_down_when_every_signal_is_good():
    d = decide(target(), obs(queue=50, cpu=0.1), TargetHistory(), NOW).decision
    assert d.desired == 1 and d.reasons[0] == R.below_target
    assert d.actions == (ScaleTo("gen", "music", "Deployment", "gen", 1, 4, d.reasons),)


def test_missing_signal_never_scales_down():
    r = recommend(target(), obs(queue=50), TargetHistory(), NOW)  # cpu missing
    assert r.replicas == 4 and r.reasons == (R.signal_missing, R.scale_down_blocked)


def test_missing_signal_still_lets_another_scale_up():
    r = recommend(target(), obs(queue=600), TargetHistory(), NOW)
    assert r.replicas == 12 and R.above_target in r.reasons and R.signal_missing in r.reasons


def test_stale_and_nan_signals_never_scale_to_zero():
    t = target(min_replicas=0)
    stale = Sample("cpu", 0.0, NOW - timedelta(minutes=3), 180.0)
    r = recommend(t, obs(queue=0, cpu=stale), TargetHistory(), NOW)
    assert r.replicas == 4 and R.signal_stale in r.reasons and R.scale_down_blocked in r.reasons
    r = recommend(t, obs(queue=math.nan, cpu=0.0), TargetHistory(), NOW)
    assert r.replicas == 4 and R.signal_invalid in r.reasons
    bad = Sample("queue", None, None, None, SampleStatus.invalid, "query returned 3 series")
    d = decide(t, obs(queue=bad, cpu=math.nan), TargetHistory(), NOW).decision
    assert d.desired == 4 and d.actions == ()


def test_all_good_zero_can_scale_to_zero():
    t = target(min_replicas=0, signals=[{"name": "queue", "query": "q", "type": "total", "target": 50}])
    d = decide(t, obs(queue=0), TargetHistory(), NOW).decision
    assert d.desired == 0


def test_fallback_fires_after_consecutive_failures():
    t = target(fallback={"mode": "fixed", "replicas": 6, "after_failures": 2})
    h = TargetHistory()
    first = decide(t, obs(source_ok=False), h, NOW)
    assert first.decision.reasons[:1] == (R.metrics_unavailable,) and first.decision.actions == ()
    second = decide(t, obs(current=4, source_ok=False), first.history, NOW + timedelta(seconds=15))
    assert second.decision.desired == 6 and R.fallback_fixed in second.decision.reasons
    assert second.decision.actions[0].replicas == 6
    ok = decide(t, obs(queue=200, cpu=0.7), second.history, NOW + timedelta(seconds=30))
    assert ok.history.failures == 0


def test_fixed_fallback_is_a_floor_on_bad_data():
    """The shipped example's `api` (fixed 4) at 12 replicas: Prometheus failing must not take it to 4."""
    t = target(max_replicas=12, fallback={"mode": "fixed", "replicas": 4, "after_failures": 3},
               behavior={"scale_down": {"stabilization_window": "5m"}})  # fmt: skip
    h, at = TargetHistory(), NOW
    for _ in range(3 * 40):  # 30 minutes of failures, one every 15 s
        d = decide(t, obs(current=12, source_ok=False), h, at)
        assert d.decision.desired == 12 and d.decision.actions == ()
        h, at = d.history, at + timedelta(seconds=15)
    assert R.fallback_fixed in d.decision.reasons and R.scale_down_blocked in d.decision.reasons


def test_fixed_fallback_raises_below_the_floor():
    t = target(fallback={"mode": "fixed", "replicas": 6, "after_failures": 1})
    d = decide(t, obs(current=2, source_ok=False), TargetHistory(), NOW).decision
    assert d.desired == 6 and d.actions[0].replicas == 6


def test_fixed_fallback_scale_down_goes_through_the_window_and_rates():
    """`allow_scale_down: true` still waits out the scale-down window and follows the rate policies."""
    behavior = {
        "scale_down": {"stabilization_window": "5m", "policies": [{"type": "pods", "value": 2, "period": "1m"}]}
    }
    t = target(max_replicas=12, behavior=behavior,
               fallback={"mode": "fixed", "replicas": 4, "after_failures": 3, "allow_scale_down": True})  # fmt: skip
    h, at, current, seen = TargetHistory(), NOW, 12, []
    h = decide(t, obs(current=12, queue=600, cpu=0.7), h, at).history  # a real recommendation of 12
    for _ in range(4 * 15):  # 15 minutes of failures
        at += timedelta(seconds=15)
        d = decide(t, obs(current=current, source_ok=False), h, at)
        if d.decision.actions:
            h = d.history.scaled(at, current, d.decision.desired, timedelta(minutes=5))
            current = d.decision.desired
        else:
            h = d.history
        seen.append((at - NOW, current))
    first_drop = next(s for s, c in seen if c < 12)
    assert first_drop >= timedelta(minutes=5)  # the window holds while it remembers 12
    drops = [b - a for (_, a), (_, b) in itertools.pairwise(seen) if b < a]
    assert drops and max(-x for x in drops) <= 2  # 2 pods per minute at most
    assert current == 4


def test_shipped_policy_fallbacks_never_scale_down():
    from empire.policies.loading import default_policy_path, load_policy

    for t in load_policy(default_policy_path()).policy.targets:
        assert t.fallback.mode.value == "hold" or not t.fallback.allow_scale_down, t.name


def test_fallback_hold():
    t = target(fallback={"mode": "hold", "after_failures": 1})
    d = decide(t, obs(source_ok=False), TargetHistory(), NOW).decision
    assert d.desired == 4 and d.reasons[:2] == (R.metrics_unavailable, R.fallback_hold) and d.actions == ()


def test_pin_from_policy_and_annotation():
    d = decide(target(pin_replicas=7), obs(queue=0, cpu=0.0), TargetHistory(), NOW).decision
    assert d.desired == 7 and d.reasons[0] == R.pinned
    d = decide(target(), obs(annotations={ANNOTATION_PIN: "3"}, queue=1000), TargetHistory(), NOW).decision
    assert d.desired == 3 and d.actions[0].reasons[0] == R.pinned
    d = decide(target(), obs(annotations={ANNOTATION_PIN: "lots"}, queue=400, cpu=0.7), TargetHistory(), NOW).decision
    assert d.desired == 8  # a malformed annotation is ignored


def test_pause_decides_and_marks_the_action():
    d = decide(target(), obs(annotations={ANNOTATION_PAUSED: "true"}, queue=400, cpu=0.7), TargetHistory(), NOW)
    assert d.decision.desired == 8 and d.decision.reasons[-1] == R.paused
    assert R.paused in d.decision.actions[0].reasons


def test_startup_grace_ignores_average_signals_and_blocks_scale_down():
    h = TargetHistory(last_scale_up_at=NOW - timedelta(seconds=10))
    r = recommend(target(), obs(queue=50, cpu=3.0), h, NOW)  # cpu spike of warming pods ignored
    assert r.replicas == 4 and R.startup_grace in r.reasons and R.scale_down_blocked in r.reasons
    r = recommend(target(), obs(queue=600, cpu=3.0), h, NOW)
    assert r.replicas == 12  # the queue still scales up
    later = TargetHistory(last_scale_up_at=NOW - timedelta(seconds=31))
    assert recommend(target(), obs(queue=50, cpu=3.0), later, NOW).replicas == 18


def test_another_autoscaler_holds_the_target_and_says_what_it_would_do():
    o = obs(queue=400, cpu=0.7)
    held = Observation(o.target, o.at, o.samples, o.current_replicas, conflicts=("HorizontalPodAutoscaler/gen",))
    d = decide(target(), held, TargetHistory(), NOW).decision
    assert d.actions == () and d.desired == 4 and d.reasons[-2:] == (R.conflict, R.no_change)
    assert d.details["conflicts"] == ["HorizontalPodAutoscaler/gen"] and d.details["would_scale_to"] == 8
    free = decide(target(), o, TargetHistory(), NOW).decision  # resolved: the same observation acts
    assert free.desired == 8 and R.conflict not in free.reasons and free.actions[0].replicas == 8


def test_the_action_carries_the_workload_kind_and_api_version():
    t = target(workload={"name": "canary", "namespace": "music", "kind": "Rollout",
                         "api_version": "argoproj.io/v1alpha1"})  # fmt: skip
    [a] = decide(t, obs(queue=400, cpu=0.7), TargetHistory(), NOW).decision.actions
    assert (a.workload_kind, a.workload_api_version) == ("Rollout", "argoproj.io/v1alpha1")
    assert a.params()["workload_api_version"] == "argoproj.io/v1alpha1"


def test_unknown_workload_never_acts():
    d = decide(target(), obs(current=None, queue=1000), TargetHistory(), NOW).decision
    assert d.actions == () and d.reasons == (R.workload_unknown,)


def test_forecast_raises_never_lowers():
    t = target(predictive={"mode": "forecast_and_scale", "signal": "queue"})
    f = Forecast("queue", 900.0, 0.9, 3600, gate=TRUSTED)
    r = recommend(t, obs(queue=200, cpu=0.7), TargetHistory(), NOW, forecast=f)
    assert r.replicas == 18 and r.reasons[-1] == R.predicted_demand
    low = Forecast("queue", 10.0, 0.9, 3600, gate=TRUSTED)
    assert recommend(t, obs(queue=400, cpu=0.7), TargetHistory(), NOW, forecast=low).replicas == 8
    only = target(predictive={"mode": "forecast_only", "signal": "queue"})
    r = recommend(only, obs(queue=200, cpu=0.7), TargetHistory(), NOW, forecast=f)
    assert r.replicas == 4 and r.forecast_replicas == 18


def test_capacity_breach_buffer():
    t = target(max_replicas=10, predictive={"mode": "forecast_and_scale", "signal": "queue",
                                            "max_capacity_breach": "increase_by_percent", "max_capacity_buffer_percent": 20})  # fmt: skip
    d = decide(
        t,
        obs(current=10, queue=500, cpu=0.7),
        TargetHistory(),
        NOW,
        forecast=Forecast("queue", 2000, 0.9, 3600, gate=TRUSTED),
    )
    # AWS semantics: the effective maximum is the forecast capacity (40) plus 20 % of it (48), not max + 20 %
    assert d.decision.desired == 40 and R.max_capacity_breach in d.decision.reasons
    up = decide(
        t,
        obs(current=10, queue=3000, cpu=0.7),
        TargetHistory(),
        NOW,
        forecast=Forecast("queue", 2000, 0.9, 3600, gate=TRUSTED),
    )
    assert up.decision.desired == 48 and R.clamped_max in up.decision.reasons  # reactive 60, capped at 48


def test_decision_details_for_explain():
    d = decide(target(), obs(queue=400, cpu=0.7), TargetHistory(), NOW).decision
    assert d.details["signals"]["queue"] == {"value": 400, "target": 50.0, "type": "total", "status": "ok",
                                             "replicas": 8, "ratio": 2.0, "staleness": 0.0}  # fmt: skip
