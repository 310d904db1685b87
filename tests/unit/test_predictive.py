"""Predictive scaling, pure parts: the quantile model, model selection, and how decide() uses a forecast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from empire.agent.deciding import decide
from empire.agent.predictive import (
    CANDIDATE,
    NAIVE,
    SEASONAL_NAIVE,
    LevelQuantileModel,
    choose_model,
    pinball_loss,
)
from empire.agent.stabilizing import TargetHistory
from empire.agent.types import Forecast, Observation, Reason, Sample
from empire.policies.scaling import Target

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def target(**predictive: object) -> Target:
    return Target.model_validate({
        "name": "web", "workload": {"name": "web"}, "min_replicas": 1, "max_replicas": 20, "startup_grace": "0s",
        "signals": [{"name": "demand", "query": "sum(rate(requests[1m]))", "type": "total", "target": 7}],
        "predictive": {"signal": "demand", **predictive},
    })  # fmt: skip


def obs(demand: float, current: int) -> Observation:
    return Observation("web", NOW, (Sample("demand", demand, NOW, 0.0),), current, current)


# -- the model ------------------------------------------------------------------------------------------


def test_quantile_forecast_of_poisson_demand_is_calibrated():
    rng = np.random.default_rng(1)
    y = rng.poisson(40, 20_000).astype(float)
    model = LevelQuantileModel(horizon=2, window=10).fit(y[:10_000])
    test = y[10_000:]
    for q in (0.5, 0.9, 0.98):
        pred = model.predict(test, q)[:-2]
        coverage = np.mean(test[2:] <= pred)
        assert coverage == pytest.approx(q, abs=0.02)
    assert model.predict(test, 0.98)[-1] > model.predict(test, 0.9)[-1] > model.predict(test, 0.5)[-1]


def test_forecasts_are_causal():
    rng = np.random.default_rng(2)
    y = rng.poisson(30, 3000).astype(float)
    for kind, season in ((CANDIDATE, 0), (SEASONAL_NAIVE, 1440)):
        model = LevelQuantileModel(2, 10, season, kind).fit(y)
        before = model.predict(y, 0.9)
        changed = y.copy()
        changed[2000:] *= 5  # the future changes ...
        after = model.predict(changed, 0.9)
        np.testing.assert_array_equal(before[:2000], after[:2000])  # ... earlier forecasts do not


def test_gaps_and_short_or_constant_series():
    y = np.full(200, 25.0)
    y[50:60] = np.nan
    model = LevelQuantileModel(2, 10).fit(y)
    assert model.predict(y, 0.98)[-1] == pytest.approx(25.0)  # constant: no spread
    assert np.isnan(model.predict(np.full(20, np.nan), 0.9)[-1])  # nothing known: no forecast
    with pytest.raises(ValueError, match="usable residuals"):
        LevelQuantileModel(2, 10).fit(np.arange(10.0))


def test_model_round_trips_through_a_registry_record():
    y = np.random.default_rng(3).poisson(12, 2000).astype(float)
    model = LevelQuantileModel(3, 10).fit(y)
    again = LevelQuantileModel.from_record(model.to_record())
    np.testing.assert_allclose(again.predict(y, 0.95), model.predict(y, 0.95))


def test_pinball_loss():
    actual, forecast = np.array([10.0, 10.0, np.nan]), np.array([8.0, 12.0, 1.0])
    assert pinball_loss(actual, forecast, 0.9) == pytest.approx((0.9 * 2 + 0.1 * 2) / 2)


# -- model selection ------------------------------------------------------------------------------------


def test_a_model_worse_than_seasonal_naive_is_not_used():
    # an exactly repeating daily square wave: the same minute yesterday knows each edge in advance,
    # the recent level only learns it 10 minutes late
    day = np.where((np.arange(1440) // 30) % 2 == 0, 10.0, 200.0)
    y = np.tile(day, 4)
    choice = choose_model(y, horizon=2, window=10, season=1440, quantile=0.9, validation=1440)
    assert choice.baseline == SEASONAL_NAIVE
    assert choice.chosen.kind == SEASONAL_NAIVE and choice.other.kind == CANDIDATE
    assert choice.losses[SEASONAL_NAIVE] < choice.losses[CANDIDATE]
    assert choice.reason.startswith("candidate not used: worse than seasonal_naive")


def test_the_candidate_is_used_when_it_beats_seasonal_naive():
    rng = np.random.default_rng(4)
    level = np.repeat(rng.uniform(10, 100, 4 * 24), 60)  # level shifts every hour, unrelated to yesterday
    y = rng.poisson(level).astype(float)
    choice = choose_model(y, horizon=2, window=10, season=1440, quantile=0.9, validation=1440)
    assert choice.chosen.kind == CANDIDATE and choice.losses[CANDIDATE] < choice.losses[SEASONAL_NAIVE]


def test_short_history_is_compared_with_plain_naive():
    y = np.random.default_rng(5).poisson(20, 600).astype(float)
    choice = choose_model(y, horizon=2, window=10, season=1440, quantile=0.9, validation=150)
    assert choice.baseline == NAIVE and set(choice.losses) == {CANDIDATE, NAIVE}


# -- decide() with a forecast ---------------------------------------------------------------------------


def test_predictive_takes_the_max_of_reactive_and_forecast():
    t = target(mode="forecast_and_scale", target=10)
    up = decide(t, obs(35, 6), TargetHistory(), NOW, Forecast("demand", 120.0, 0.98, 120)).decision
    assert up.desired == 12 and Reason.predicted_demand in up.reasons  # ceil(120 / 10) beats ceil(35 / 7) = 5
    assert Reason.below_target not in up.reasons
    assert up.details["forecast"]["replicas"] == 12
    low = decide(t, obs(140, 5), TargetHistory(), NOW, Forecast("demand", 30.0, 0.98, 120)).decision
    assert low.desired == 10 and Reason.predicted_demand not in low.reasons  # reactive wins (5 -> 20, rate 10)


def test_predictive_may_scale_in_through_the_scale_down_window():
    t = target(mode="forecast_and_scale", target=10)
    history = TargetHistory(recommendations=((NOW - timedelta(minutes=1), 12),))  # it needed 12 a minute ago
    replicas, desired = 12, []
    for minute in range(6):  # demand and forecast both fell: max(ceil(20 / 7), ceil(35 / 10)) = 4
        at = NOW + timedelta(minutes=minute)
        o = Observation("web", at, (Sample("demand", 20.0, at, 0.0),), replicas, replicas)
        d = decide(t, o, history, at, Forecast("demand", 35.0, 0.98, 120))
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
    d = decide(t, obs(35, 5), TargetHistory(), NOW, Forecast("demand", 120.0, 0.98, 120)).decision
    assert d.desired == 5 and d.actions == ()
    assert Reason.forecast_only in d.reasons and Reason.predicted_demand not in d.reasons
    assert d.details["forecast"]["would_scale_to"] == 12 and d.details["forecast_replicas"] == 12


def test_max_capacity_breach_honor_and_increase_by_percent():
    forecast = Forecast("demand", 300.0, 0.98, 120)  # 30 replicas; max_replicas is 20
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


def test_one_origin_forecast_matches_the_series_forecast():
    """The per-tick path (mean of the level window, then the quantile) equals `predict` at that origin."""
    rng = np.random.default_rng(6)
    y = rng.poisson(rng.uniform(5, 80, 4 * 1440).repeat(1)).astype(float)
    for model in (LevelQuantileModel(2, 10, 0, CANDIDATE), LevelQuantileModel(3, 10, 1440, SEASONAL_NAIVE)):
        model.fit(y)
        t = len(y) - 1
        first, last = model.window_back()
        level = float(np.mean(y[t - first : t - last + 1]))
        assert model.from_level(level, 0.9) == pytest.approx(model.predict(y, 0.9)[t])
