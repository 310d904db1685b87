"""The horizon forecast, pure parts: which (target, signal) pairs get one and at which horizons, the grid
step, resampling, the guarded fits, the path between now and the horizon, what a decision records,
the stored models' allow-list, and a predicted_breach rule reading the path."""

from __future__ import annotations

import fractions
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from empire.agent.alerting.rules import RuleInputs, evaluate
from empire.agent.deciding import decide
from empire.agent.horizon.path import (
    HorizonPath,
    PathPoint,
    bucket_means,
    build_path,
    dump_models,
    fit_leads,
    forecast_point,
    grid_step,
    grid_times,
    horizon_specs,
    load_models,
    sample_step,
)
from empire.agent.predictive import horizon_details
from empire.agent.stabilizing import TargetHistory
from empire.agent.types import Forecast, Observation, Reason, Sample
from empire.models.forecast import MODEL, DemandForecaster
from empire.policies.schema import Policy, parse_policy

NOW = datetime(2026, 3, 1, 12, 2, tzinfo=UTC)
STEP = 300.0


def policy(predictive: dict[str, Any] | None = None, *rules: dict[str, Any]) -> Policy:
    return parse_policy({
        "targets": [{"name": "gen", "workload": {"name": "gen"}, "min_replicas": 2, "max_replicas": 40,
                     "signals": [{"name": "queue", "query": "sum(queue)", "target": 50, "type": "total"},
                                 {"name": "cpu", "query": "avg(cpu)", "target": 0.7}],
                     "predictive": {"signal": "queue", **(predictive or {})}}],
        "alerting": {"rules": list(rules)},
    })  # fmt: skip


def breach(name: str = "queue-breach", horizon: str = "60m", signal: str = "queue", **over: Any) -> dict[str, Any]:
    return {"name": name, "kind": "predicted_breach", "target": "gen", "signal": signal, "threshold": 1800,
            "horizon": horizon, "severity": "critical", **over}  # fmt: skip


# -- what gets a horizon forecast -------------------------------------------------------------------------


def test_predictive_targets_and_breach_rules_ask_for_horizon_forecasts() -> None:
    assert horizon_specs(policy()) == {}  # mode off, no rule: nothing to forecast
    [spec] = horizon_specs(policy({"mode": "forecast_only", "horizon": "1h", "quantile": 0.95})).values()
    assert (spec.target, spec.signal, spec.query) == ("gen", "queue", "sum(queue)")
    assert spec.step == 300 and spec.leads == (12,) and spec.asked == ((3600.0, "predictive"),)
    assert spec.quantiles == (0.1, 0.5, 0.9, 0.95) and spec.quantile == 0.95
    assert spec.name == "horizon:gen/queue" and spec.refit_every == 6 * 3600 and spec.history == 14 * 86400
    # scaling not predictive, but a predicted_breach rule needs the forecast anyway
    specs = horizon_specs(policy({"mode": "off"}, breach(), breach("cpu-breach", "2h", "cpu")))
    assert set(specs) == {("gen", "queue"), ("gen", "cpu")}
    assert specs[("gen", "cpu")].step == 600 and specs[("gen", "cpu")].leads == (12,)
    # the default horizons of scaling (1h) and of rules (60m) coincide: one model
    [both] = horizon_specs(policy({"mode": "forecast_and_scale"}, breach())).values()
    assert both.leads == (12,) and [who for _, who in both.asked] == ["predictive", "rule:queue-breach"]


def test_each_horizon_asked_gets_its_own_point_on_a_step_fit_for_the_shortest() -> None:
    [spec] = horizon_specs(policy({"mode": "forecast_only", "horizon": "2h"}, breach(horizon="30m"))).values()
    assert spec.step == 120 and spec.leads == (15, 60)  # 30 min / 12 -> 2-minute steps; 15 and 60 of them
    assert spec.notes() == []
    [odd] = horizon_specs(policy({"mode": "forecast_only", "horizon": "1h"}, breach(horizon="62m"))).values()
    assert odd.leads == (12,)  # 62 minutes is 12 whole 5-minute steps, like 60
    assert odd.notes() == ["rule:queue-breach asks 1h2m; its forecast point is at 1h (whole 5-minute steps)"]


@pytest.mark.parametrize(
    ("horizon", "step"),
    [(3600, 300), (7200, 600), (6 * 3600, 1800), (1800, 120), (86400, 3600), (600, 60), (60, 60)],
)
def test_grid_step(horizon: float, step: float) -> None:
    assert grid_step([horizon]) == step


def test_sample_step_is_at_most_ten_per_step_and_never_finer_than_the_loop() -> None:
    assert sample_step(300, 15) == 30 and sample_step(60, 15) == 15 and sample_step(300, 600) == 300


# -- resampling -------------------------------------------------------------------------------------------


def test_bucket_means_average_each_step_and_mark_partial_steps_as_gaps() -> None:
    end = 1_800_000_000.0
    fine = 30.0
    points = [(end - 3 * STEP + fine * (k + 1), 10.0 + k) for k in range(30)]  # three full steps
    y = bucket_means(points, end, STEP, 3, 10)
    np.testing.assert_allclose(y, [14.5, 24.5, 34.5])  # (10..19), (20..29), (30..39)
    sparse = [p for p in points if not (10 <= (p[1] - 10) < 16)]  # the middle step keeps 4 of its 10 samples
    y = bucket_means([*sparse, (end - STEP, math.nan)], end, STEP, 3, 10)
    assert y[0] == 14.5 and math.isnan(y[1]) and y[2] == 34.5
    ts = grid_times(end, STEP, 3)
    assert ts[-1] == np.datetime64(int(end), "s") and (ts[1] - ts[0]).astype(int) == 300


# -- fitting, guarded -------------------------------------------------------------------------------------


def series(days: float, *, noise: float = 8.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    n = int(days * 288)
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    y = 200 + 150 * np.sin(2 * np.pi * t / 288) + rng.normal(0, noise, n) * (noise > 0)
    ts = np.datetime64("2026-02-01T00:00:00") + t * np.timedelta64(300, "s")
    return np.maximum(y, 0), ts


SMALL = DemandForecaster(max_iter=40, learning_rate=0.2)


def test_fit_leads_keeps_a_model_only_when_not_worse_than_its_fallback() -> None:
    y, ts = series(6)
    [fit] = fit_leads(y, ts, STEP, [12], (0.1, 0.5, 0.9), SMALL)
    assert fit.model is not None and fit.method == MODEL and fit.validation_mae <= fit.fallback_mae
    assert fit.model.horizon == 3600 and fit.reason.startswith("model: holdout MAE")
    point = forecast_point(fit, y, ts, STEP, (0.1, 0.5, 0.9))
    assert point.seconds == 3600 and point.method == MODEL
    assert point.quantiles[0.1] <= point.quantiles[0.5] <= point.quantiles[0.9]
    truth = 200 + 150 * math.sin(2 * math.pi * (len(y) - 1 + 12) / 288)
    assert point.quantiles[0.5] == pytest.approx(truth, abs=40)

    exact, ts = series(6, noise=0)  # a day repeating exactly: the seasonal fallback knows it perfectly
    [guarded] = fit_leads(exact, ts, STEP, [12], (0.5, 0.9), SMALL)
    assert guarded.model is None and guarded.method == "fallback"
    assert guarded.reason.startswith("fallback: model holdout MAE") and guarded.fallback_mae < guarded.validation_mae
    point = forecast_point(guarded, exact, ts, STEP, (0.5, 0.9))
    assert point.method == "seasonal_change" and point.quantiles[0.5] == pytest.approx(
        200 + 150 * math.sin(2 * math.pi * (len(exact) - 1 + 12) / 288), abs=1e-6
    )


def test_a_short_history_degrades_to_the_fallback_with_the_reason() -> None:
    y, ts = series(1)
    [fit] = fit_leads(y, ts, STEP, [12], (0.5, 0.9), SMALL)
    assert fit.model is None and fit.validation_mae is None and "need 864 valid steps" in fit.reason
    assert forecast_point(fit, y, ts, STEP, (0.5, 0.9)).method in ("seasonal_change", "last_value")


def test_stored_models_round_trip_and_other_types_are_refused() -> None:
    y, ts = series(4)
    [fit] = fit_leads(y, ts, STEP, [12], (0.5, 0.9), SMALL)
    again = load_models(dump_models([fit.model, None]))
    assert again[1] is None and again[0].forecast(y, ts).value == fit.model.forecast(y, ts).value
    import skops.io as sio

    with pytest.raises(ValueError, match=r"outside the allow-list: fractions\.Fraction"):
        load_models(sio.dumps([fractions.Fraction(1, 2)]))


# -- the path ---------------------------------------------------------------------------------------------


def anchors() -> list[PathPoint]:
    return [PathPoint(1800, {0.5: 130.0, 0.9: 160.0}, MODEL), PathPoint(3600, {0.5: 180.0, 0.9: 220.0}, MODEL)]


def test_path_interpolates_between_the_observation_and_the_forecasts() -> None:
    points = build_path(100.0, anchors(), STEP)
    assert [p.seconds for p in points] == [STEP * k for k in range(13)]
    assert [p.method for p in points] == ["observed"] + ["interpolated"] * 5 + [MODEL] + ["interpolated"] * 5 + [MODEL]
    assert points[3].quantiles == {0.5: pytest.approx(115.0), 0.9: pytest.approx(130.0)}  # half way to 30 min
    assert points[9].quantiles[0.9] == pytest.approx(190.0)
    no_obs = build_path(None, anchors(), STEP)
    assert no_obs[0].seconds == 1800 and len(no_obs) == 7


def test_path_forecasts_count_from_now_and_skip_the_observation() -> None:
    origin = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    path = HorizonPath("gen", "queue", origin, STEP, build_path(100.0, anchors(), STEP), 0.9)
    fs = path.forecasts(NOW)  # two minutes after the step ended
    assert fs[0] == Forecast("queue", pytest.approx(110.0), 0.9, 180.0, "interpolated")
    assert fs[-1] == Forecast("queue", 220.0, 0.9, 3480.0, MODEL)
    assert [f.value for f in path.forecasts(NOW, 0.5)][-1] == 180.0
    assert [p.seconds for p in path.anchors()] == [1800, 3600]
    summary = path.summary()
    assert summary["step"] == "5m" and summary["points"][-1] == {
        "in": "1h",
        "method": MODEL,
        "p50": 180.0,
        "p90": 220.0,
    }


def test_a_breach_rule_fires_on_the_path_and_says_when_and_from_what() -> None:
    pol = policy({"mode": "off"}, breach(threshold=195))
    origin = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    path = HorizonPath("gen", "queue", origin, STEP, build_path(100.0, anchors(), STEP), 0.9)
    ev = evaluate(pol, RuleInputs(forecasts={("gen", "queue"): path.forecasts(origin)}), {}, origin)
    [alert] = ev.actions
    # p90 crosses 195 between the 30-minute (160) and the 60-minute (220) forecasts: at 50 minutes, by the line
    assert alert.annotations["breach_in"] == "50m" and alert.annotations["forecast_model"] == "interpolated"
    assert alert.annotations["forecast_quantile"] == "p90" and alert.value == pytest.approx(200.0)
    quiet = HorizonPath("gen", "queue", origin, STEP, build_path(100.0, anchors()[:1], STEP), 0.9)
    ev = evaluate(pol, RuleInputs(forecasts={("gen", "queue"): quiet.forecasts(origin)}), {}, origin)
    assert ev.actions == () and ev.results[0].value == 160.0  # the peak of the path, below the threshold


# -- what a decision records ------------------------------------------------------------------------------


def test_forecast_only_decisions_record_the_horizon_forecast() -> None:
    pol = policy({"mode": "forecast_only", "quantile": 0.9, "target": 20})
    target = pol.targets[0]
    origin = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    path = HorizonPath("gen", "queue", origin, STEP, build_path(100.0, anchors(), STEP), 0.9)
    info = horizon_details(target, target.signals[0], path, NOW, 150.0)
    assert info is not None
    assert info["horizon"] == "1h" and info["in_seconds"] == 3480 and info["method"] == MODEL
    assert info["quantiles"] == {"p50": 180.0, "p90": 220.0} and info["value"] == 220.0
    assert info["replicas"] == 11 and info["would_scale_to"] == 11  # ceil(220 / 20), within 2..40
    assert info["at"] == "2026-03-01T13:00:00+00:00"
    forecast = Forecast("queue", 150.0, 0.9, 120, "recent_level", {"horizon": info})
    obs = Observation("gen", NOW, (Sample("queue", 100.0, NOW, 0.0),), 5, 5)
    d = decide(target, obs, TargetHistory(), NOW, forecast).decision
    assert d.desired == 5 and Reason.forecast_only in d.reasons  # forecast_only acts on nothing
    assert d.details["forecast"]["would_scale_to"] == 8  # the scaling forecast: ceil(150 / 20)
    assert d.details["forecast"]["horizon"]["would_scale_to"] == 11  # the horizon forecast: what it would need
    assert d.details["forecast"]["replicas"] == 8  # a forecaster's details never override the decision's own
