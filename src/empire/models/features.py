"""Causal features for demand forecasting: pure numpy, no I/O, no clocks.

Why a separate module: the forecaster, the walk-forward evaluation and the tests must agree on one
rule, *row T describes target ``y[T]`` using only values at indices ``<= T - horizon``*. Every
feature here is built from ``lag(x, k)`` with ``k >= horizon`` applied to a trailing statistic, so
the rule holds by construction and ``tests/unit/test_features.py`` checks it by perturbing the
future. Calendar terms come from the timestamps passed in (the target's own time is known in
advance), never from a clock.

The series is regular: one value per ``step`` on a calendar grid, with a validity mask that marks
gaps and known-bad intervals (a trace's ``status != ok``). Invalid points are NaN to every
statistic: a rolling mean skips them, a lag of one is NaN (gradient boosting routes NaN natively).

Features are expressed relative to an *anchor*, the level the forecast starts from (the last valid
value, or a short or daily trailing mean), so that a model learns changes, which generalise across
levels and traces, rather than absolute values.

``resample_sum`` puts raw samples on the grid (summing within each step, as the reference baselines
do for hourly series); it lives here because it is the other pure step between a CSV and a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DAY",
    "WEEK",
    "FeatureMatrix",
    "build_features",
    "calendar_terms",
    "carry_forward",
    "lag",
    "resample_sum",
    "rolling_mean",
    "seasonal_lag",
    "step_seconds",
    "steps_in",
]

DAY = 86400.0
WEEK = 7 * DAY

# The last valid value is carried forward at most this long; older than that it says nothing.
_MAX_CARRY = WEEK


def step_seconds(timestamps: np.ndarray) -> float:
    """The grid step of ``timestamps`` (datetime64), which must be strictly regular."""
    ts = np.asarray(timestamps).astype("datetime64[s]")
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError("need at least two timestamps to know the step")
    diffs = np.diff(ts).astype(np.int64)
    if diffs[0] <= 0 or np.any(diffs != diffs[0]):
        raise ValueError("timestamps must be a regular, increasing grid (resample first; mark gaps invalid)")
    return float(diffs[0])


def steps_in(seconds: float, step: float) -> int:
    """How many grid steps make ``seconds`` (at least one)."""
    return max(1, round(seconds / step))


def seasonal_lag(season: int, horizon: int) -> int:
    """The smallest multiple of ``season`` steps that is at least ``horizon`` (causal seasonal lag)."""
    return season * max(1, math.ceil(horizon / season))


def lag(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` delayed by ``k >= 0`` steps: ``out[i] = x[i - k]``, NaN before the start."""
    out = np.full(len(x), np.nan)
    if k == 0:
        out[:] = x
    elif k < len(x):
        out[k:] = x[:-k]
    return out


def carry_forward(z: np.ndarray, valid: np.ndarray, max_age: int) -> tuple[np.ndarray, np.ndarray]:
    """The last valid value at or before each index, and its age in steps.

    NaN (and age NaN) where no valid value lies within ``max_age`` steps.
    """
    n = len(z)
    idx = np.where(valid, np.arange(n), -1)
    idx = np.maximum.accumulate(idx) if n else idx
    age = np.arange(n) - idx
    ok = (idx >= 0) & (age <= max_age)
    out = np.where(ok, z[np.maximum(idx, 0)], np.nan)
    return out, np.where(ok, age, np.nan).astype(float)


def rolling_mean(z: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Mean of the valid values in the trailing window ``(i - window, i]``; NaN if there are none."""
    vals = np.where(valid, z, 0.0)
    csum = np.concatenate([[0.0], np.cumsum(vals)])
    ccnt = np.concatenate([[0], np.cumsum(valid.astype(np.int64))])
    hi = np.arange(1, len(z) + 1)
    lo = np.maximum(hi - window, 0)
    count = ccnt[hi] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def _nanmean(arrays: list[np.ndarray]) -> np.ndarray:
    stack = np.vstack(arrays)
    count = np.sum(np.isfinite(stack), axis=0)
    total = np.nansum(stack, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def calendar_terms(timestamps: np.ndarray) -> dict[str, np.ndarray]:
    """Hour of day and hour of week as cyclic (sin, cos) terms, plus the raw hour and weekday.

    The timestamps are taken as wall-clock time (a trace's local time): demand follows the clock
    people live by.
    """
    ts = np.asarray(timestamps).astype("datetime64[s]")
    days = ts.astype("datetime64[D]")
    hour = (ts - days).astype(np.int64) / 3600.0
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    week_hour = weekday * 24.0 + hour
    return {
        "hour_sin": np.sin(2 * np.pi * hour / 24.0),
        "hour_cos": np.cos(2 * np.pi * hour / 24.0),
        "week_sin": np.sin(2 * np.pi * week_hour / 168.0),
        "week_cos": np.cos(2 * np.pi * week_hour / 168.0),
        "hour": hour,
        "weekday": weekday.astype(float),
    }


@dataclass(frozen=True)
class FeatureMatrix:
    """Row ``T`` holds the features for target ``T`` (relative to ``anchor[T]``)."""

    X: np.ndarray
    anchor: np.ndarray
    names: tuple[str, ...]


def build_features(
    z: np.ndarray,
    valid: np.ndarray,
    timestamps: np.ndarray,
    *,
    horizon: int,
    anchor_window: int,
    step: float,
) -> FeatureMatrix:
    """Features for every target index of a regular series.

    ``z`` is the (already transformed) series, ``valid`` its mask, ``horizon`` and ``anchor_window``
    are in steps. ``anchor_window == 1`` anchors on the last valid value at the origin ``T - horizon``
    (carried over gaps for up to a week); a longer window anchors on the trailing mean of that many
    steps. Features: recent lags, same time one and two days and weeks back (and the steps beside
    them), trailing daily and weekly levels, the mean of the same time over the past seven days and
    two weeks compared with the same at the origin (the expected change to the target), the age of
    the last valid value, and calendar terms of the target time.
    """
    z = np.asarray(z, dtype=float)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(z)
    z = np.where(valid, z, np.nan)
    h = int(horizon)
    if h < 1:
        raise ValueError("horizon must be at least one step")
    day = steps_in(DAY, step)
    week = steps_in(WEEK, step)
    last, age = carry_forward(np.nan_to_num(z), valid, steps_in(_MAX_CARRY, step))
    origin_level = last if anchor_window <= 1 else rolling_mean(np.nan_to_num(z), valid, anchor_window)
    anchor = lag(origin_level, h)

    cols: dict[str, np.ndarray] = {}
    for k in range(h, h + 4):
        cols[f"lag_{k}"] = lag(z, k)
    d1, w1 = seasonal_lag(day, h), seasonal_lag(week, h)
    for name, base, season in (("day", d1, day), ("week", w1, week)):
        cols[f"{name}_1"] = lag(z, base)
        cols[f"{name}_2"] = lag(z, base + season)
        cols[f"{name}_1_next"] = lag(z, base - 1) if base - 1 >= h else np.full(len(z), np.nan)
        cols[f"{name}_1_prev"] = lag(z, base + 1)
    day_mean = rolling_mean(np.nan_to_num(z), valid, day)
    cols["level_day"] = lag(day_mean, h)
    cols["level_week"] = lag(rolling_mean(np.nan_to_num(z), valid, week), h)
    cols["level_day_1d_ago"] = lag(day_mean, h + day)
    cols["level_day_1w_ago"] = lag(day_mean, h + week)
    # The typical value at the target's time of day vs the typical value at the origin's.
    same_time = _nanmean([lag(z, d1 + j * day) for j in range(7)])
    same_origin = _nanmean([lag(z, h + j * day) for j in range(1, 8)])
    same_time_w = _nanmean([lag(z, w1), lag(z, w1 + week)])
    same_origin_w = _nanmean([lag(z, h + week), lag(z, h + 2 * week)])
    cols["same_time_7d"] = same_time
    cols["same_origin_7d"] = same_origin
    cols["same_time_2w"] = same_time_w
    cols["same_origin_2w"] = same_origin_w
    rel = {name: col - anchor for name, col in cols.items()}
    rel["origin_deviation"] = lag(last, h) - same_origin
    rel["expected_change_7d"] = same_time - same_origin
    rel["expected_change_2w"] = same_time_w - same_origin_w
    rel["age"] = lag(age, h) + h
    rel.update(calendar_terms(timestamps))
    X = np.column_stack(list(rel.values()))
    return FeatureMatrix(X=X, anchor=anchor, names=tuple(rel))


def resample_sum(
    seconds: np.ndarray,
    values: np.ndarray,
    valid: np.ndarray,
    step: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum raw samples into a regular grid of ``step`` seconds aligned on the epoch (clock hours).

    ``seconds`` are sample times (seconds since the epoch, wall clock). The native step is the most
    common positive spacing; ``step`` must be a multiple of it. A grid cell is valid only when it
    holds exactly ``step / native`` samples and all of them are valid, so a partly missing hour is a
    gap, not a low value. Returns ``(grid_seconds, sums, valid)``.
    """
    seconds = np.asarray(seconds, dtype=float)
    values = np.asarray(values, dtype=float)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(values)
    if len(seconds) < 2:
        raise ValueError("need at least two samples")
    order = np.argsort(seconds, kind="stable")
    seconds, values, valid = seconds[order], values[order], valid[order]
    diffs = np.diff(seconds)
    diffs = diffs[diffs > 0]
    if len(diffs) == 0:
        raise ValueError("all samples have the same timestamp")
    uniq, counts = np.unique(diffs, return_counts=True)
    native = float(uniq[np.argmax(counts)])
    ratio = step / native
    if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"step {step:g}s is not a multiple of the input's native step {native:g}s")
    per = round(ratio)
    start = math.floor(seconds[0] / step) * step
    cell = np.floor((seconds - start) / step).astype(np.int64)
    n = int(cell[-1]) + 1
    sums = np.bincount(cell, weights=np.where(valid, values, 0.0), minlength=n)
    count = np.bincount(cell, minlength=n)
    good = np.bincount(cell, weights=valid.astype(float), minlength=n)
    ok = (count == per) & (good == per)
    grid = start + step * np.arange(n)
    return grid, np.where(ok, sums, np.nan), ok
