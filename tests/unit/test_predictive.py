"""Predictive scaling, pure parts: how decide() uses a forecast (the models: test_shortterm.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from empire.agent.deciding import decide
from empire.agent.stabilizing import TargetHistory
from empire.agent.types import Forecast, ForecastGate, Observation, Reason, Sample
from empire.policies.scaling import Target

TRUSTED = ForecastGate.trusted  # what the predictive guard says once a forecast has earned it

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def target(**predictive: object) -> Target:
    return Target.model_validate({
        "name": "web", "workload": {"name": "web"}, "min_replicas": 1, "max_replicas": 20, "startup_grace": "0s",
        "signals": [{"name": "demand", "query": "sum(rate(requests[1m]))", "type": "total", "target": 7}],
        "predictive": {"signal": "demand", **predictive},
    })  # fmt: skip


def obs(demand: float, current: int) -> Observation:
    return Observation("web", NOW, (Sample("demand", demand, NOW, 0.0),), current, current)


# -- decide() with a forecast ---------------------------------------------------------------------------


def test_predictive_takes_the_max_of_reactive_and_forecast():
    t = target(mode="forecast_and_scale", target=10)
    up = decide(t, obs(35, 6), TargetHistory(), NOW, Forecast("demand", 120.0, 0.98, 120, gate=TRUSTED)).decision
    assert up.desired == 12 and Reason.predicted_demand in up.reasons  # ceil(120 / 10) beats ceil(35 / 7) = 5
    assert Reason.below_target not in up.reasons
    assert up.details["forecast"]["replicas"] == 12
    low = decide(t, obs(140, 5), TargetHistory(), NOW, Forecast("demand", 30.0, 0.98, 120, gate=TRUSTED)).decision
    assert low.desired == 10 and Reason.predicted_demand not in low.reasons  # reactive wins (5 -> 20, rate 10)


def test_predictive_may_scale_in_through_the_scale_down_window():
    t = target(mode="forecast_and_scale", target=10)
    history = TargetHistory(recommendations=((NOW - timedelta(minutes=1), 12),))  # it needed 12 a minute ago
    replicas, desired = 12, []
    for minute in range(6):  # demand and forecast both fell: max(ceil(20 / 7), ceil(35 / 10)) = 4
        at = NOW + timedelta(minutes=minute)
        o = Observation("web", at, (Sample("demand", 20.0, at, 0.0),), replicas, replicas)
        d = decide(t, o, history, at, Forecast("demand", 35.0, 0.98, 120, gate=TRUSTED))
        history = d.history
        if d.decision.actions:
            history = history.scaled(at, replicas, d.decision.desired, timedelta(minutes=5))
            replicas = d.decision.desired
        elif replicas == 12:
            assert Reason.stabilized_down in d.decision.reasons
        desired.append(d.decision.desired)
    assert desired == [12, 12, 12, 12, 4, 4]  # held by the 5-minute window, then scaled in


def test_forecast_only_records_and_never_acts():
    t = target(mode="forecast_only", target=10)
    d = decide(t, obs(35, 5), TargetHistory(), NOW, Forecast("demand", 120.0, 0.98, 120, gate=TRUSTED)).decision
    assert d.desired == 5 and d.actions == ()
    assert Reason.forecast_only in d.reasons and Reason.predicted_demand not in d.reasons
    assert d.details["forecast"]["would_scale_to"] == 12 and d.details["forecast_replicas"] == 12


def test_max_capacity_breach_honor_and_increase_by_percent():
    forecast = Forecast("demand", 300.0, 0.98, 120, gate=TRUSTED)  # 30 replicas; max_replicas is 20
    honor = decide(target(mode="forecast_and_scale", target=10), obs(35, 19), TargetHistory(), NOW, forecast).decision
    assert honor.desired == 20 and Reason.clamped_max in honor.reasons
    t = target(mode="forecast_and_scale", target=10, max_capacity_breach="increase_by_percent",
               max_capacity_buffer_percent=10)  # fmt: skip
    breach = decide(t, obs(35, 19), TargetHistory(), NOW, forecast).decision
    assert breach.desired == 30 and Reason.max_capacity_breach in breach.reasons
    # the raised ceiling (30 + 10 % = 33) bounds the reactive signal too, as AWS's effective maximum does
    reactive = decide(t, obs(280, 19), TargetHistory(), NOW, forecast).decision
    assert reactive.desired == 33 and Reason.clamped_max in reactive.reasons
    only = target(mode="forecast_only", target=10, max_capacity_breach="increase_by_percent")
    d = decide(only, obs(35, 19), TargetHistory(), NOW, forecast).decision
    assert d.desired == 19 and d.details["forecast"]["would_scale_to"] == 30
