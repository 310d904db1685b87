"""Demand forecasting: quantile forecasts, a degraded fallback, and a causal walk-forward.

Why this shape (numbers from ``benchmarks/forecast.py``, hourly traces, one-hour horizon):

- **Model.** Gradient boosting (scikit-learn ``HistGradientBoostingRegressor``, absolute-error loss,
  so it estimates the median) on the causal features of :mod:`empire.models.features`, in log1p
  space, predicting the *change from an anchor*. A change in log space is scale free, so one set of
  hyperparameters serves a web log and a taxi fleet, and trees never have to extrapolate a level.
- **Several anchors, blended.** Trees cannot average, so the anchor decides what "no change" means:
  the last value wins when demand moves smoothly (taxi), a two-hour or daily mean when the last hour
  is noisy (NASA). One model per anchor; the blend weights come from a time-ordered holdout (the
  last ``validation_fraction`` of the history): ``w ∝ (best_mae / mae) ** blend_power``.
- **Quantiles** are the holdout's log residuals around their median, added to the blended median:
  out-of-sample, ordered by construction, and multiplicative (wider in absolute terms at the peak).
- **Too short a history** is refused: ``fit`` raises :class:`InsufficientHistory` (a
  ``PermanentError``: retrying with the same data cannot help) that names what is needed and what
  is there. :func:`fallback_forecast` is the degraded estimate, the last value plus the mean change
  seen from the origin's time to the target's time one day and one week earlier (NASA 298, taxi
  2022, vs last value 361 and 4170); it needs one valid value. :func:`forecast_demand` tries the
  model and falls back, and the result says which method produced it and why.
- **Walk-forward** evaluation lives in :mod:`empire.models.evaluation`.

Errors::

    PermanentError
    └── InsufficientHistory(needed, available)   fewer valid steps than ``min_history``
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from empire.errors import PermanentError
from empire.models.features import (
    DAY,
    WEEK,
    build_features,
    carry_forward,
    lag,
    seasonal_lag,
    step_seconds,
    steps_in,
)

__all__ = [
    "LAST_VALUE",
    "METHODS",
    "MODEL",
    "SEASONAL_CHANGE",
    "DemandForecast",
    "DemandForecaster",
    "InsufficientHistory",
    "fallback_forecast",
    "fallback_quantiles",
    "forecast_demand",
    "horizon_steps",
    "prepare_series",
    "quantile_name",
    "seasonal_change",
]

logger = logging.getLogger(__name__)

# Which method produced a forecast (closed set: these are metric and CSV labels).
MODEL = "gbm"
SEASONAL_CHANGE = "seasonal_change"
LAST_VALUE = "last_value"
METHODS = (MODEL, SEASONAL_CHANGE, LAST_VALUE)


class InsufficientHistory(PermanentError):
    """Too little valid history to fit the model; ``needed`` and ``available`` are in steps."""

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


@dataclass(frozen=True)
class DemandForecast:
    """Demand expected at ``at`` (= origin + horizon): the median and the requested quantiles."""

    at: np.datetime64
    horizon_seconds: float
    value: float
    quantiles: Mapping[float, float]
    method: str
    reason: str = ""

    @property
    def degraded(self) -> bool:
        """True when a fallback, not the model, produced this forecast (``reason`` says why)."""
        return self.method != MODEL

    def quantile(self, q: float) -> float:
        for level, value in self.quantiles.items():
            if math.isclose(level, q):
                return value
        raise ValueError(f"quantile {q} was not forecast; have {sorted(self.quantiles)}")


def quantile_name(q: float) -> str:
    """Column name of a quantile: 0.1 -> ``p10``, 0.975 -> ``p97.5``."""
    return f"p{round(q * 100, 3):g}"


def prepare_series(values: Any, timestamps: Any, valid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Raw values, validity mask, datetime64 stamps and the step; shapes checked."""
    y = np.asarray(values, dtype=float).ravel()
    ts = np.asarray(timestamps, dtype="datetime64[s]").ravel()
    if len(ts) != len(y):
        raise ValueError(f"{len(y)} values but {len(ts)} timestamps")
    ok = np.isfinite(y)
    if valid is not None:
        mask = np.asarray(valid, dtype=bool).ravel()
        if len(mask) != len(y):
            raise ValueError(f"{len(y)} values but {len(mask)} validity flags")
        ok &= mask
    return np.where(ok, np.maximum(y, 0.0), np.nan), ok, ts, step_seconds(ts)


def horizon_steps(horizon: float, step: float) -> int:
    steps = horizon / step
    if steps < 1 - 1e-9 or abs(steps - round(steps)) > 1e-9:
        raise ValueError(f"horizon {horizon:g}s is not a whole number of {step:g}s steps")
    return round(steps)


def _extend(y: np.ndarray, ok: np.ndarray, ts: np.ndarray, steps: int, step: float):
    """Append ``steps`` unknown points so the last row is the target ``origin + horizon``."""
    more = ts[-1] + np.arange(1, steps + 1) * np.timedelta64(round(step), "s")
    return (
        np.concatenate([y, np.full(steps, np.nan)]),
        np.concatenate([ok, np.zeros(steps, bool)]),
        np.concatenate([ts, more]),
    )


def _blend(preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over anchors (rows), renormalised over the anchors available per column."""
    w = np.where(np.isfinite(preds), weights[:, None], 0.0)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * np.nan_to_num(preds)).sum(axis=0) / total, np.nan)


def _offsets(residuals: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Quantiles of log residuals around their median (zeros when there are too few)."""
    r = residuals[np.isfinite(residuals)]
    if len(r) < 2:
        return np.zeros(len(quantiles))
    return np.quantile(r, list(quantiles)) - np.median(r)


def _mae(pred: np.ndarray, actual: np.ndarray) -> float:
    good = np.isfinite(pred) & np.isfinite(actual)
    return float(np.mean(np.abs(pred[good] - actual[good]))) if good.any() else math.inf


def seasonal_change(y: np.ndarray, valid: np.ndarray, *, horizon: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """The fallback forecast for every target index, and the method that produced each.

    ``ŷ[T] = last valid value at the origin + mean over {day, week} of (y[T-s] - y[origin-s])``: the
    change from the origin's time to the target's time, as seen one day and one week earlier (the
    terms whose data exist). With neither, the last value. NaN (method ``""``) when there is no
    valid value in the week before the origin.
    """
    y = np.where(valid, y, np.nan)
    last, _ = carry_forward(np.nan_to_num(y), valid & np.isfinite(y), steps_in(WEEK, step))
    base = lag(last, horizon)
    changes = []
    for season in (steps_in(DAY, step), steps_in(WEEK, step)):
        s = seasonal_lag(season, horizon)
        changes.append(lag(y, s) - lag(y, s + horizon))
    stack = np.vstack(changes)
    count = np.isfinite(stack).sum(axis=0)
    change = np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1), np.nan)
    pred = np.maximum(np.where(np.isfinite(change), base + change, base), 0.0)
    method = np.where(np.isfinite(change), SEASONAL_CHANGE, LAST_VALUE).astype(object)
    method[~np.isfinite(base)] = ""
    return np.where(np.isfinite(base), pred, np.nan), method


def fallback_quantiles(y: np.ndarray, pred: np.ndarray, history_end: int, quantiles: Sequence[float]) -> np.ndarray:
    """Quantile offsets (log space) from the fallback's own errors on the history."""
    actual, past = y[:history_end], pred[:history_end]
    return _offsets(np.log1p(actual) - np.log1p(past), quantiles)


class DemandForecaster(BaseEstimator):
    """Quantile demand forecaster for a regular series (scikit-learn contract).

    ``fit(values, timestamps, valid)`` learns from a history on a regular grid (``valid`` marks the
    usable points; NaN values are invalid too); ``predict`` / ``predict_quantiles`` give the
    forecast for every target index ``T`` of a series from data at indices ``<= T - horizon``;
    ``forecast`` gives the one forecast for ``timestamps[-1] + horizon``.

    Times are in seconds: ``horizon`` (a whole number of steps), ``anchor_windows`` (0 = the last
    valid value, else a trailing mean of that span) and ``min_history`` (valid steps needed to fit).
    """

    def __init__(
        self,
        horizon: float = 3600.0,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        anchor_windows: Sequence[float] = (0.0, 7200.0, DAY),
        max_iter: int = 300,
        learning_rate: float = 0.05,
        min_samples_leaf: int = 40,
        validation_fraction: float = 0.2,
        blend_power: float = 8.0,
        min_history: float = 3 * DAY,
        n_threads: int | None = 1,
        random_state: int | None = 0,
    ) -> None:
        self.horizon = horizon
        self.quantiles = quantiles
        self.anchor_windows = anchor_windows
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.validation_fraction = validation_fraction
        self.blend_power = blend_power
        self.min_history = min_history
        self.n_threads = n_threads
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------------

    def _new_model(self) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            loss="absolute_error",
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.random_state,
        )

    def _fit_one(self, X: np.ndarray, target: np.ndarray) -> tuple[HistGradientBoostingRegressor, np.ndarray]:
        """One boosted model on the columns that have data (a lag longer than the history is all
        NaN, which the binning of scikit-learn 1.9 rejects); returns it with those columns."""
        cols = np.flatnonzero(np.isfinite(X).any(axis=0))
        return self._new_model().fit(X[:, cols], target), cols

    def _features(self, z: np.ndarray, ok: np.ndarray, ts: np.ndarray, window: int, step: float):
        return build_features(z, ok, ts, horizon=self.horizon_steps_, anchor_window=window, step=step)

    def fit(self, values: Any, timestamps: Any, valid: Any = None) -> DemandForecaster:
        """Fit on a history; raises :class:`InsufficientHistory` when it is too short."""
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._fit(values, timestamps, valid)

    def _fit(self, values: Any, timestamps: Any, valid: Any) -> DemandForecaster:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in (0, 1)")
        if not self.anchor_windows:
            raise ValueError("anchor_windows must name at least one anchor")
        y, ok, ts, step = prepare_series(values, timestamps, valid)
        h = horizon_steps(self.horizon, step)
        self.step_ = step
        self.horizon_steps_ = h
        self.anchor_steps_ = tuple(1 if w <= 0 else steps_in(w, step) for w in self.anchor_windows)
        z = np.log1p(y)
        mats = [self._features(z, ok, ts, w, step) for w in self.anchor_steps_]
        rows = ok & np.isfinite(mats[0].anchor)
        needed = max(steps_in(self.min_history, step), 10)
        available = int(rows.sum())
        if available < needed:
            raise InsufficientHistory(
                f"need {needed} valid steps of history ({needed * step / 3600:g} h) to fit the "
                f"forecaster, have {available}",
                needed=needed,
                available=available,
            )
        idx = np.flatnonzero(rows)
        n_val = max(2, round(len(idx) * self.validation_fraction))
        cut = idx[-n_val]
        val = idx[idx >= cut]
        train = idx[idx <= cut - h]  # the holdout's origins must not see its targets

        held = np.full((len(mats), len(val)), np.nan)
        for a, fm in enumerate(mats):
            rows_a = train[np.isfinite(fm.anchor[train])]
            if len(rows_a) == 0:
                continue
            model, cols = self._fit_one(fm.X[rows_a], z[rows_a] - fm.anchor[rows_a])
            ok_val = np.isfinite(fm.anchor[val])
            held[a, ok_val] = fm.anchor[val][ok_val] + model.predict(fm.X[val][ok_val][:, cols])
        actual = y[val]
        errors = np.array([_mae(np.expm1(p), actual) for p in held])
        best = float(np.min(errors))
        ratio = np.where(errors > 0, best / np.where(errors > 0, errors, 1.0), 1.0)
        weights = np.where(np.isfinite(errors), ratio**self.blend_power, 0.0)
        if not np.isfinite(best) or weights.sum() == 0:
            weights = np.ones(len(mats))
        self.weights_ = weights / weights.sum()
        blended = _blend(held, self.weights_)
        self.quantile_offsets_ = _offsets(z[val] - blended, self.quantiles)
        self.validation_mae_ = _mae(np.expm1(blended), actual)
        fallback, _ = seasonal_change(y, ok, horizon=h, step=step)
        self.fallback_validation_mae_ = _mae(fallback[val], actual)
        self.anchor_validation_mae_ = tuple(float(e) for e in errors)

        self.models_, self.feature_columns_ = [], []
        for fm in mats:
            rows_a = idx[np.isfinite(fm.anchor[idx])]
            model, cols = self._fit_one(fm.X[rows_a], z[rows_a] - fm.anchor[rows_a])
            self.models_.append(model)
            self.feature_columns_.append(cols)
        self.feature_names_ = mats[0].names
        self.n_history_ = available
        return self

    # -- prediction ------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError("DemandForecaster is not fitted yet; call fit() first")

    def _predict_log(self, y: np.ndarray, ok: np.ndarray, ts: np.ndarray, rows: slice) -> np.ndarray:
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._predict_log_unlimited(y, ok, ts, rows)

    def _predict_log_unlimited(self, y: np.ndarray, ok: np.ndarray, ts: np.ndarray, rows: slice) -> np.ndarray:
        preds = []
        z = np.log1p(y)
        for window, model, cols in zip(self.anchor_steps_, self.models_, self.feature_columns_, strict=True):
            fm = self._features(z, ok, ts, window, self.step_)
            X, anchor = fm.X[rows], fm.anchor[rows]
            p = np.full(len(anchor), np.nan)
            good = np.isfinite(anchor)
            if good.any():
                p[good] = anchor[good] + model.predict(X[good][:, cols])
            preds.append(p)
        return _blend(np.vstack(preds), self.weights_)

    def _quantiles_from_log(self, zhat: np.ndarray) -> np.ndarray:
        out = np.expm1(zhat[:, None] + self.quantile_offsets_[None, :])
        return np.maximum(out, 0.0)

    def _series(self, values: Any, timestamps: Any, valid: Any):
        self._check_fitted()
        y, ok, ts, step = prepare_series(values, timestamps, valid)
        if not math.isclose(step, self.step_):
            raise ValueError(f"series step {step:g}s differs from the fitted step {self.step_:g}s")
        return y, ok, ts

    def predict(self, values: Any, timestamps: Any, valid: Any = None) -> np.ndarray:
        """Median forecast of every target index (NaN where no anchor is known)."""
        y, ok, ts = self._series(values, timestamps, valid)
        return np.maximum(np.expm1(self._predict_log(y, ok, ts, slice(None))), 0.0)

    def predict_quantiles(self, values: Any, timestamps: Any, valid: Any = None) -> np.ndarray:
        """Forecast quantiles of every target index: shape ``(n, len(quantiles))``, ordered."""
        y, ok, ts = self._series(values, timestamps, valid)
        return self._quantiles_from_log(self._predict_log(y, ok, ts, slice(None)))

    def predict_rows(self, values: Any, timestamps: Any, valid: Any, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """Median and quantiles for the target indices in ``rows`` only (the walk-forward's use)."""
        y, ok, ts = self._series(values, timestamps, valid)
        zhat = self._predict_log(y, ok, ts, rows)
        return np.maximum(np.expm1(zhat), 0.0), self._quantiles_from_log(zhat)

    def forecast(self, values: Any, timestamps: Any, valid: Any = None) -> DemandForecast:
        """The forecast for ``timestamps[-1] + horizon`` from this history.

        If the model has no anchor there (no valid value in the last week), this degrades to
        :func:`fallback_forecast` and says so in ``reason``.
        """
        y, ok, ts = self._series(values, timestamps, valid)
        h = self.horizon_steps_
        ye, oke, tse = _extend(y, ok, ts, h, self.step_)
        zhat = self._predict_log(ye, oke, tse, slice(-1, None))
        if not np.isfinite(zhat[0]):
            return fallback_forecast(
                values, timestamps, valid, horizon=self.horizon, quantiles=self.quantiles,
                reason="the model has no recent valid value to start from",
            )  # fmt: skip
        q = self._quantiles_from_log(zhat)[0]
        return DemandForecast(
            at=tse[-1],
            horizon_seconds=float(self.horizon),
            value=float(max(np.expm1(zhat[0]), 0.0)),
            quantiles={float(level): float(v) for level, v in zip(self.quantiles, q, strict=True)},
            method=MODEL,
        )


def fallback_forecast(
    values: Any,
    timestamps: Any,
    valid: Any = None,
    *,
    horizon: float = 3600.0,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    reason: str = "",
) -> DemandForecast:
    """The degraded forecast for ``timestamps[-1] + horizon`` (see :func:`seasonal_change`).

    Quantiles come from the same rule's past errors on this history (collapsed onto the median when
    there are fewer than two). Raises :class:`InsufficientHistory` only when no valid value lies in
    the week before the origin.
    """
    y, ok, ts, step = prepare_series(values, timestamps, valid)
    h = horizon_steps(horizon, step)
    ye, oke, tse = _extend(y, ok, ts, h, step)
    pred, method = seasonal_change(ye, oke, horizon=h, step=step)
    if not np.isfinite(pred[-1]):
        raise InsufficientHistory(
            "no valid value in the week before the forecast origin; cannot even fall back",
            needed=1,
            available=0,
        )
    offsets = fallback_quantiles(ye, pred, len(y), quantiles)
    median = float(pred[-1])
    qs = np.maximum(np.expm1(np.log1p(median) + offsets), 0.0)
    return DemandForecast(
        at=tse[-1],
        horizon_seconds=float(horizon),
        value=median,
        quantiles={float(level): float(v) for level, v in zip(quantiles, qs, strict=True)},
        method=str(method[-1]),
        reason=reason,
    )


def forecast_demand(
    values: Any,
    timestamps: Any,
    valid: Any = None,
    *,
    forecaster: DemandForecaster | None = None,
    guard: bool = True,
) -> DemandForecast:
    """Fit a (clone of) ``forecaster`` on this history and forecast ``timestamps[-1] + horizon``.

    Falls back to :func:`fallback_forecast` when the history is too short or, with ``guard``, when
    the model did worse than the fallback on its own holdout; ``method`` and ``reason`` say so.
    """
    est = clone(forecaster) if forecaster is not None else DemandForecaster()
    try:
        est.fit(values, timestamps, valid)
    except InsufficientHistory as exc:
        return fallback_forecast(
            values, timestamps, valid, horizon=est.horizon, quantiles=est.quantiles, reason=str(exc)
        )
    if guard and est.validation_mae_ > est.fallback_validation_mae_:
        reason = (
            f"model holdout MAE {est.validation_mae_:.4g} is worse than the fallback's "
            f"{est.fallback_validation_mae_:.4g}"
        )
        return fallback_forecast(values, timestamps, valid, horizon=est.horizon, quantiles=est.quantiles, reason=reason)
    return est.forecast(values, timestamps, valid)
