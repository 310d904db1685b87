"""Forecast features: causal by construction, gap-aware, calendar from the timestamps given."""

from __future__ import annotations

import numpy as np
import pytest

from empire.models.features import (
    build_features,
    calendar_terms,
    carry_forward,
    lag,
    resample_sum,
    rolling_mean,
    seasonal_lag,
    step_seconds,
    steps_in,
)

HOUR = 3600.0


def hourly(n: int, start: str = "2024-01-01T00:00") -> np.ndarray:
    return np.datetime64(start, "s") + np.arange(n) * np.timedelta64(3600, "s")


def series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 5 + np.sin(2 * np.pi * t / 24) + 0.3 * np.sin(2 * np.pi * t / 168) + rng.normal(0, 0.1, n)


def test_lag_shifts_and_pads_with_nan() -> None:
    x = np.arange(5.0)
    np.testing.assert_array_equal(lag(x, 2), [np.nan, np.nan, 0, 1, 2])
    np.testing.assert_array_equal(lag(x, 0), x)
    assert np.isnan(lag(x, 9)).all()


def test_rolling_mean_skips_invalid_points() -> None:
    z = np.array([1.0, 100.0, 3.0, 5.0])
    valid = np.array([True, False, True, True])
    np.testing.assert_allclose(rolling_mean(z, valid, 2), [1.0, 1.0, 3.0, 4.0])
    assert np.isnan(rolling_mean(z, np.zeros(4, bool), 3)).all()


def test_carry_forward_stops_after_max_age() -> None:
    z = np.array([7.0, 0.0, 0.0, 0.0])
    valid = np.array([True, False, False, False])
    value, age = carry_forward(z, valid, max_age=2)
    np.testing.assert_array_equal(value[:3], [7.0, 7.0, 7.0])
    np.testing.assert_array_equal(age[:3], [0, 1, 2])
    assert np.isnan(value[3]) and np.isnan(age[3])


def test_step_seconds_requires_a_regular_grid() -> None:
    assert step_seconds(hourly(3)) == HOUR
    with pytest.raises(ValueError, match="regular"):
        step_seconds(np.array(["2024-01-01T00", "2024-01-01T01", "2024-01-01T03"], dtype="datetime64[s]"))
    with pytest.raises(ValueError):
        step_seconds(hourly(1))


def test_seasonal_lag_is_never_shorter_than_the_horizon() -> None:
    assert seasonal_lag(24, 1) == 24
    assert seasonal_lag(24, 30) == 48
    assert steps_in(86400, HOUR) == 24
    assert steps_in(10, HOUR) == 1


def test_calendar_terms_come_from_the_timestamps() -> None:
    # 2024-01-01 was a Monday.
    ts = np.array(["2024-01-01T00:00", "2024-01-06T18:30"], dtype="datetime64[s]")
    cal = calendar_terms(ts)
    np.testing.assert_allclose(cal["hour"], [0.0, 18.5])
    np.testing.assert_array_equal(cal["weekday"], [0, 5])
    np.testing.assert_allclose(cal["hour_sin"][0], 0.0, atol=1e-12)
    np.testing.assert_allclose(cal["hour_cos"][0], 1.0)


@pytest.mark.parametrize("horizon", [1, 3])
@pytest.mark.parametrize("window", [1, 2, 24])
def test_features_never_look_past_the_origin(horizon: int, window: int) -> None:
    n = 600
    z, ts = series(n), hourly(n)
    valid = np.ones(n, bool)
    base = build_features(z, valid, ts, horizon=horizon, anchor_window=window, step=HOUR)
    k = 400
    changed = z.copy()
    changed[k + 1 :] += np.random.default_rng(1).normal(0, 5, n - k - 1)
    valid2 = valid.copy()
    valid2[k + 1 :: 7] = False
    other = build_features(changed, valid2, ts, horizon=horizon, anchor_window=window, step=HOUR)
    # Targets T <= k + horizon have their origin at or before k: identical rows.
    upto = k + horizon + 1
    np.testing.assert_array_equal(base.X[:upto], other.X[:upto])
    np.testing.assert_array_equal(base.anchor[:upto], other.anchor[:upto])
    # ... and the features do depend on the data (the check above is not vacuous).
    assert not np.allclose(np.nan_to_num(base.X[upto + 5 :]), np.nan_to_num(other.X[upto + 5 :]))


def test_invalid_points_are_ignored_whatever_their_value() -> None:
    n = 400
    z, ts = series(n), hourly(n)
    valid = np.ones(n, bool)
    valid[100:130] = False
    a = build_features(z, valid, ts, horizon=1, anchor_window=1, step=HOUR)
    garbage = z.copy()
    garbage[100:130] = 1e9
    b = build_features(garbage, valid, ts, horizon=1, anchor_window=1, step=HOUR)
    np.testing.assert_array_equal(a.X, b.X)
    # Across the gap the anchor is the last valid value, and the age says how old it is.
    assert a.anchor[120] == z[99]
    assert a.X[120, a.names.index("age")] == 21


def test_feature_names_match_columns_and_include_calendar_terms() -> None:
    fm = build_features(series(300), np.ones(300, bool), hourly(300), horizon=1, anchor_window=1, step=HOUR)
    assert fm.X.shape == (300, len(fm.names))
    for name in ("lag_1", "day_1", "week_1", "level_day", "hour_sin", "week_cos"):
        assert name in fm.names
    with pytest.raises(ValueError):
        build_features(series(10), np.ones(10, bool), hourly(10), horizon=0, anchor_window=1, step=HOUR)


def test_resample_sums_native_samples_and_marks_incomplete_steps() -> None:
    start = np.datetime64("2024-01-01T00:00", "s").astype(np.int64)
    seconds = start + 1800 * np.arange(8, dtype=float)
    values = np.arange(1.0, 9.0)
    valid = np.ones(8, bool)
    valid[5] = False  # a bad half hour poisons its hour
    grid, sums, ok = resample_sum(np.delete(seconds, 2), np.delete(values, 2), np.delete(valid, 2), HOUR)
    np.testing.assert_array_equal(grid, start + HOUR * np.arange(4))
    np.testing.assert_array_equal(ok, [True, False, False, True])  # hour 1 lost a sample, hour 2 is bad
    assert sums[0] == 3.0 and sums[3] == 15.0
    assert np.isnan(sums[1])
    with pytest.raises(ValueError, match="multiple"):
        resample_sum(seconds, values, valid, 2700.0)
    with pytest.raises(ValueError, match="multiple"):
        resample_sum(seconds, values, valid, 600.0)
