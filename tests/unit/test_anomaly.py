"""The streaming anomaly detector: causality, edge cases, online == batch, a planted spike."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from empire.errors import ConfigError
from empire.models.anomaly import DEFAULT_THRESHOLD, AnomalyDetector

STEP = 300.0  # five-minute samples
T0 = 1_400_000_000.0

# Small windows so that every stream is active, and the novelty history slides, on short series.
SMALL = {
    "window": 120,
    "calibration_window": 200,
    "calibration_min": 50,
    "novelty_window": 300,
    "learning_period": 150,
    "suppress": 50,
    "season": 3600.0,
    "z_features": ("season", "diff"),
    "novelty_features": ("value", "season"),
}


def seasonal_series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + STEP * np.arange(n)
    x = 50 + 20 * np.sin(2 * np.pi * t / 86400.0) + rng.normal(0, 1.0, n)
    return t, x


def test_scores_are_in_unit_interval_and_one_per_point() -> None:
    t, x = seasonal_series(1500)
    s = AnomalyDetector(**SMALL).fit(x, timestamps=t).scores_
    assert s.shape == x.shape
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0


def test_causal_future_values_never_change_earlier_scores() -> None:
    t, x = seasonal_series(1200, seed=1)
    base = AnomalyDetector(**SMALL).fit(x, timestamps=t).scores_
    k = 700
    changed = x.copy()
    changed[k:] = np.random.default_rng(9).normal(500, 100, x.size - k)
    other = AnomalyDetector(**SMALL).fit(changed, timestamps=t).scores_
    np.testing.assert_array_equal(base[:k], other[:k])
    assert not np.array_equal(base[k:], other[k:])


def test_online_update_matches_batch() -> None:
    t, x = seasonal_series(700, seed=2)
    x[500] += 40
    batch = AnomalyDetector(**SMALL).fit(x, timestamps=t).scores_
    det = AnomalyDetector(**SMALL)
    online = np.array([det.update(v, ts) for v, ts in zip(x, t, strict=True)])
    np.testing.assert_allclose(online, batch, rtol=0, atol=1e-12)


def test_score_samples_continues_the_fitted_stream_without_changing_it() -> None:
    t, x = seasonal_series(900, seed=3)
    full = AnomalyDetector(**SMALL).fit(x, timestamps=t).scores_
    det = AnomalyDetector(**SMALL).fit(x[:600], timestamps=t[:600])
    rest = det.score_samples(x[600:], timestamps=t[600:])
    np.testing.assert_allclose(rest, full[600:], atol=1e-12)
    np.testing.assert_allclose(det.score_samples(x[600:], timestamps=t[600:]), rest)  # unchanged
    labels = det.predict(x[600:], timestamps=t[600:])
    assert set(np.unique(labels)) <= {-1, 1}
    np.testing.assert_array_equal(labels == -1, rest >= DEFAULT_THRESHOLD)
    np.testing.assert_allclose(det.decision_function(x[600:], timestamps=t[600:]), DEFAULT_THRESHOLD - rest)


def test_planted_spike_is_detected_and_quiet_elsewhere() -> None:
    t, x = seasonal_series(2000, seed=4)
    x[1600] += 15  # fifteen noise standard deviations
    s = AnomalyDetector().fit(x, timestamps=t).scores_
    assert s[1600] >= DEFAULT_THRESHOLD
    quiet = np.r_[s[700:1600], s[1700:]]  # after warm-up, away from the spike
    assert (quiet >= DEFAULT_THRESHOLD).sum() <= 1


def test_suppression_is_a_duration_so_a_sensor_with_gaps_alerts_on_its_next_incident() -> None:
    # Five-minute samples, then the sensor reports once an hour: 60 points after the first spike
    # are 60 hours later, far past the 100 steps (8.3 hours) an incident is held for.
    t, x = seasonal_series(1700, seed=6)
    t[1501:] = t[1500] + 3600.0 * np.arange(1, 200)
    x[1500] += 15
    x[1560] += 15
    s = AnomalyDetector().fit(x, timestamps=t).scores_
    assert s[1500] >= DEFAULT_THRESHOLD and s[1560] >= DEFAULT_THRESHOLD
    det = AnomalyDetector()
    online = np.array([det.update(v, ts) for v, ts in zip(x, t, strict=True)])
    np.testing.assert_allclose(online, s, rtol=0, atol=1e-12)
    # regular sampling: the second spike falls inside the hold and is not a new alert
    t2, _ = seasonal_series(1700, seed=6)
    held = AnomalyDetector().fit(x, timestamps=t2).scores_
    assert held[1500] >= DEFAULT_THRESHOLD and held[1560] < DEFAULT_THRESHOLD


def test_level_shift_is_detected() -> None:
    t, x = seasonal_series(2000, seed=5)
    x[1500:] += 10
    s = AnomalyDetector().fit(x, timestamps=t).scores_
    assert s[1500:1520].max() >= DEFAULT_THRESHOLD


def test_constant_series_scores_zero_then_a_change_is_anomalous() -> None:
    x = np.full(1500, 45.0)
    t = T0 + STEP * np.arange(x.size)
    s = AnomalyDetector().fit(x, timestamps=t).scores_
    assert np.all(s == 0.0)
    x[1200] = 46.0
    s = AnomalyDetector().fit(x, timestamps=t).scores_
    assert np.all(s[:1200] == 0.0)
    assert s[1200] >= DEFAULT_THRESHOLD


def test_nan_inf_and_gaps_do_not_crash_and_score_zero() -> None:
    t, x = seasonal_series(1500, seed=6)
    x[[800, 801, 900]] = np.nan
    x[1000] = np.inf
    x[1001] = -np.inf
    t[1100:] += 6 * 3600.0  # a six-hour gap
    s = AnomalyDetector().fit(x, timestamps=t).scores_
    assert np.all(np.isfinite(s)) and s.min() >= 0.0 and s.max() <= 1.0
    assert np.all(s[[800, 801, 900, 1000, 1001]] == 0.0)
    det = AnomalyDetector()
    assert det.update(float("nan"), T0) == 0.0
    assert 0.0 <= det.update(1.0, T0 + STEP) <= 1.0


def test_no_timestamps_uses_the_row_index() -> None:
    _, x = seasonal_series(600, seed=7)
    s = AnomalyDetector(season=None).fit(x).scores_
    assert s.shape == x.shape


def test_out_of_order_timestamps_name_the_row() -> None:
    t, x = seasonal_series(50)
    t[30] = t[29] - 60
    with pytest.raises(ConfigError, match=r"row 30"):
        AnomalyDetector().fit(x, timestamps=t)
    det = AnomalyDetector()
    det.update(1.0, 1000.0)
    det.update(1.0, 1300.0)
    with pytest.raises(ConfigError, match=r"out of order at row 2"):
        det.update(1.0, 1200.0)


def test_equal_timestamps_are_accepted() -> None:
    x = np.arange(10, dtype=float)
    t = np.array([0, 1, 1, 2, 3, 3, 4, 5, 6, 7], dtype=float)
    assert AnomalyDetector().fit(x, timestamps=t).scores_.shape == (10,)


def test_timestamp_types() -> None:
    x = np.ones(3)
    iso = ["2024-01-01 00:00:00", "2024-01-01 00:05:00", "2024-01-01T00:10:00"]
    d64 = np.array(iso, dtype="datetime64[s]")
    a = AnomalyDetector().fit(x, timestamps=iso).scores_
    b = AnomalyDetector().fit(x, timestamps=d64).scores_
    np.testing.assert_array_equal(a, b)


def test_sklearn_contract() -> None:
    det = AnomalyDetector(window=50)
    assert det.get_params()["window"] == 50
    assert det.set_params(window=60) is det and det.window == 60
    with pytest.raises(ConfigError, match="unknown parameter"):
        det.set_params(windw=3)
    with pytest.raises(NotFittedError):
        det.score_samples([1.0, 2.0])
    assert not any(k.endswith("_") for k in vars(AnomalyDetector()))  # no learned state before fit
    t, x = seasonal_series(300)
    assert det.fit(x, timestamps=t) is det
    assert det.n_seen_ == 300
    assert set(np.unique(det.fit_predict(x, timestamps=t))) <= {-1, 1}


def test_invalid_hyperparameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        AnomalyDetector(threshold=1.5).fit([1.0])
    with pytest.raises(ConfigError, match="window"):
        AnomalyDetector(window=0).fit([1.0])
    with pytest.raises(ConfigError, match="one series"):
        AnomalyDetector().fit(np.ones((3, 2)))


def test_never_seen_level_is_detected_even_when_it_is_not_extreme_for_the_recent_window() -> None:
    # A metric that alternates between two bands (as an autoscaled CPU); a value in the gap
    # between them has never been seen, though it is inside the recent range.
    rng = np.random.default_rng(11)
    n = 3000
    t = T0 + STEP * np.arange(n)
    x = np.where((np.arange(n) // 7) % 2 == 0, 30.0, 90.0) + rng.normal(0, 0.5, n)
    x[2500] = 60.0
    s = AnomalyDetector(season=None).fit(x, timestamps=t).scores_
    assert s[2500] >= DEFAULT_THRESHOLD
    assert (s[800:2500] >= DEFAULT_THRESHOLD).sum() == 0


def test_missing_daily_peak_is_detected_by_the_seasonal_stream() -> None:
    rng = np.random.default_rng(12)
    n = 288 * 10
    t = T0 + STEP * np.arange(n)
    hour = (t / 3600.0) % 24
    x = np.where((hour >= 9) & (hour < 17), 80.0, 20.0) + rng.normal(0, 1.0, n)
    day8 = (np.arange(n) // 288) == 8
    x[day8] = 20.0 + rng.normal(0, 1.0, day8.sum())  # the working day that did not happen
    s = AnomalyDetector().fit(x, timestamps=t).scores_
    assert s[day8].max() >= DEFAULT_THRESHOLD
    assert (s[800 : 288 * 8] >= DEFAULT_THRESHOLD).sum() == 0


def test_unordered_keep_scores_a_clock_step_back_as_the_running_latest_time() -> None:
    t, x = seasonal_series(1500, seed=13)
    stepped = t.copy()
    stepped[1000:] -= 3300.0  # the clock goes back 55 minutes once
    with pytest.raises(ConfigError, match="row 1000"):
        AnomalyDetector().fit(x, timestamps=stepped)
    kept = AnomalyDetector(unordered="keep").fit(x, timestamps=stepped).scores_
    same = AnomalyDetector().fit(x, timestamps=np.maximum.accumulate(stepped)).scores_
    np.testing.assert_array_equal(kept, same)
    det = AnomalyDetector(unordered="keep")
    online = [det.update(v, ts) for v, ts in zip(x, stepped, strict=True)]
    np.testing.assert_allclose(online, kept, atol=1e-12)
    with pytest.raises(ConfigError, match="unordered"):
        AnomalyDetector(unordered="sort").fit(x, timestamps=t)


def test_novelty_history_slides_with_repeated_values() -> None:
    from empire.models.anomaly_streams import Novelty

    rng = np.random.default_rng(14)
    x = rng.integers(0, 5, 2000).astype(float)  # many equal values
    whole = Novelty(300, 20)
    d = whole.process(x)
    # Updated every 20 points: the last update (at point 1980) holds exactly points 1680..1979.
    np.testing.assert_array_equal(whole.ordered, np.sort(x[1680:1980]))
    parts = Novelty(300, 20)
    pieces = np.concatenate([parts.process(c) for c in np.array_split(x, 37)])
    np.testing.assert_array_equal(pieces, d)


def test_denser_spikes_are_detected_by_the_rolling_mean_stream() -> None:
    # Spikes of the same height every 100 points, then every 20: no single value is new, the
    # local mean is (as NAB's art_increase_spike_density).
    n = 4000
    t = T0 + STEP * np.arange(n)
    x = np.zeros(n)
    x[::100] = 20.0
    x[3000:3400:20] = 20.0
    s = AnomalyDetector(season=None).fit(x, timestamps=t).scores_
    assert s[3000:3400].max() >= DEFAULT_THRESHOLD
    assert (s[800:3000] >= DEFAULT_THRESHOLD).sum() == 0
    without = AnomalyDetector(season=None, novelty_features=("value",)).fit(x, timestamps=t).scores_
    assert without[3000:3400].max() < DEFAULT_THRESHOLD


def test_rolling_stats_do_not_depend_on_block_size() -> None:
    from empire.models.anomaly_streams import Rolling

    x = np.random.default_rng(15).normal(0, 1, 500)
    whole_mean, whole_std = Rolling(24).process(x)
    parts = Rolling(24)
    pieces = [parts.process(c) for c in np.array_split(x, 41)]
    np.testing.assert_array_equal(np.concatenate([m for m, _ in pieces]), whole_mean)
    np.testing.assert_array_equal(np.concatenate([s for _, s in pieces]), whole_std)
    np.testing.assert_allclose(whole_mean[100], x[77:101].mean())
    np.testing.assert_allclose(whole_std[100], x[77:101].std())


def test_conformal_novelty_p_values_are_calibrated_on_exchangeable_noise() -> None:
    from empire.models.anomaly_streams import Novelty

    x = np.random.default_rng(16).normal(0, 1, 6000)
    p = Novelty(20000, 20, interior="conformal").process(x)[1000:]
    assert p.min() > 0.0 and p.max() <= 1.0
    assert (p <= 0.05).mean() <= 0.08  # roughly uniform: not a stream of false alarms
    assert p.min() > 1e-6  # nothing in iid noise reaches the daemon's 1e-5 level


def test_a_new_record_far_beyond_the_extremes_is_improbable_and_a_trend_is_not() -> None:
    from empire.models.anomaly_streams import Novelty

    rng = np.random.default_rng(17)
    x = rng.normal(0, 1, 3000)
    x[2500] = 12.0
    p = Novelty(20000, 20, interior="arrival").process(x)
    assert p[2500] < 1e-8
    trend = 0.01 * np.arange(3000) + rng.normal(0, 0.1, 3000)  # a new record every few points
    # With the default "arrival" interior (conformal gaps assume exchangeable data, not a trend).
    assert Novelty(20000, 20, interior="arrival").process(trend)[1000:].min() > 1e-5


def test_novelty_interior_is_validated() -> None:
    with pytest.raises(ConfigError, match="novelty_interior"):
        AnomalyDetector(novelty_interior="nearest").fit([1.0, 2.0])
    s = AnomalyDetector(novelty_interior="conformal").fit(*seasonal_series(900)[::-1], timestamps=None).scores_
    assert s.shape == (900,)


# scikit-learn's estimator checks that apply to a detector of one series whose score depends on
# the order of its points (a stream): the others feed several columns, shuffle or subsample rows,
# or expect NaN to be an error (here a missing value scores 0).
APPLICABLE_CHECKS = {
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimators_unfitted",
    "check_fit2d_1feature",
    "check_get_params_invariance",
    "check_mixin_order",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_set_params",
}


def test_scikit_learn_estimator_checks_that_apply_pass() -> None:
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(AnomalyDetector(), on_fail=None)
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert passed >= APPLICABLE_CHECKS


def test_sits_in_a_pipeline_and_clones() -> None:
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    t, x = seasonal_series(900, seed=5)
    x[800] += 30
    pipe = make_pipeline(FunctionTransformer(np.log1p), AnomalyDetector(**SMALL))
    head = pipe.fit(x[:700, None], anomalydetector__timestamps=t[:700])
    assert head is pipe
    alone = clone(AnomalyDetector(**SMALL)).fit(np.log1p(x), timestamps=t).scores_
    np.testing.assert_allclose(pipe[-1].score_samples(np.log1p(x[700:]), timestamps=t[700:]), alone[700:])


NOISE_SHAPES = {
    "gaussian": lambda rng, n: rng.normal(size=n),
    "student_t3": lambda rng, n: rng.standard_t(3, size=n),
    "lognormal": lambda rng, n: rng.lognormal(size=n),
    "poisson": lambda rng, n: rng.poisson(3.0, size=n).astype(float),
}


@pytest.mark.parametrize("shape", sorted(NOISE_SHAPES))
def test_false_alarm_rate_on_stationary_noise_is_the_stated_one_at_any_scale(shape: str) -> None:
    # The documented meaning of the default threshold: on stationary noise of any shape and any
    # scale, at most FALSE_ALARMS_PER_10K alarms per 10,000 points; the score does not depend on
    # the metric's unit or offset.
    from empire.models.anomaly import FALSE_ALARMS_PER_10K

    n = 12000
    base = NOISE_SHAPES[shape](np.random.default_rng(7), n)
    t = T0 + STEP * np.arange(n)
    counts = []
    for scale, offset in ((1.0, 0.0), (1e-3, 5.0), (1e4, -2e5)):
        s = AnomalyDetector().fit(offset + scale * base, timestamps=t).scores_
        counts.append(int((s >= DEFAULT_THRESHOLD).sum()))
    assert max(counts) - min(counts) <= 1
    assert max(counts) / n * 1e4 <= FALSE_ALARMS_PER_10K


def test_novelty_floor_is_quieter_on_noise_and_online_equals_batch() -> None:
    rng = np.random.default_rng(11)
    n = 12000
    x = rng.lognormal(size=n)
    t = T0 + STEP * np.arange(n)
    plain = AnomalyDetector().fit(x, timestamps=t).scores_
    floored = AnomalyDetector(novelty_floor=True).fit(x, timestamps=t).scores_
    assert (floored >= DEFAULT_THRESHOLD).sum() < (plain >= DEFAULT_THRESHOLD).sum()
    ts, xs = seasonal_series(700, seed=3)
    xs[600] += 40
    batch = AnomalyDetector(novelty_floor=True, **SMALL).fit(xs, timestamps=ts).scores_
    det = AnomalyDetector(novelty_floor=True, **SMALL)
    online = np.array([det.update(v, s) for v, s in zip(xs, ts, strict=True)])
    np.testing.assert_allclose(online, batch, rtol=0, atol=1e-12)
    assert batch[600] >= DEFAULT_THRESHOLD
