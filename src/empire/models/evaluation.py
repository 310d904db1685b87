"""Walk-forward evaluation of the demand forecaster against the naive baselines, on the same rows.

Fits on the first part of a series, then walks forward through the rest making every forecast only
from data at or before its origin (refitting every ``refit_every``), and scores the model and the
naive forecasts (last value, same time yesterday, same time last week, the seasonal fallback) with
MAE, MASE_1 and MASE_d as defined in the traces' BASELINES.md. `empire forecast` and
`benchmarks/forecast.py` share it, so the CLI prints what the benchmark measures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone

from empire.models.features import DAY, WEEK, lag, seasonal_lag, steps_in
from empire.models.forecast import (
    MODEL,
    DemandForecaster,
    InsufficientHistory,
    fallback_quantiles,
    horizon_steps,
    prepare_series,
    seasonal_change,
)

__all__ = ["WalkForward", "walk_forward"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WalkForward:
    """Forecasts for the test part of a series, the naive baselines on the same rows, and metrics.

    ``metrics[name]`` has ``mae``, ``mase_1``, ``mase_d`` and ``n`` for ``forecast`` (ours) and
    the baselines ``naive`` (last value), ``seasonal_daily``, ``seasonal_weekly`` and
    ``seasonal_change`` (the fallback), all over the ``scored`` rows: valid target, every method
    has a forecast. ``forecast`` also has ``coverage`` (share of actuals inside the outer quantiles).
    """

    timestamps: np.ndarray
    actual: np.ndarray
    forecast: np.ndarray
    quantiles: tuple[float, ...]
    quantile_forecasts: np.ndarray
    method: np.ndarray
    baselines: Mapping[str, np.ndarray]
    scored: np.ndarray
    metrics: Mapping[str, Mapping[str, float]]
    scales: Mapping[str, float]
    n_train: int
    refits: int
    notes: tuple[str, ...] = field(default=())


def _scale(y: np.ndarray, lag_steps: int, end: int) -> float:
    a, b = y[lag_steps:end], y[: max(end - lag_steps, 0)]
    good = np.isfinite(a) & np.isfinite(b)
    return float(np.mean(np.abs(a[good] - b[good]))) if good.any() else math.nan


def walk_forward(
    values: Any,
    timestamps: Any,
    valid: Any = None,
    *,
    forecaster: DemandForecaster | None = None,
    train_fraction: float = 0.8,
    refit_every: float | None = WEEK,
    guard: bool = True,
) -> WalkForward:
    """Fit on the first ``train_fraction`` of the series, then forecast every later step.

    A clone of ``forecaster`` is refitted every ``refit_every`` seconds (``None``: fit once) on all
    data up to the first origin of its block, so each forecast of target ``T`` uses only data at
    indices ``<= T - horizon``. Blocks where the model cannot be fitted (too short a history) or,
    with ``guard``, did worse than the fallback on its holdout use :func:`seasonal_change`.
    """
    y, ok, ts, step = prepare_series(values, timestamps, valid)
    est = forecaster if forecaster is not None else DemandForecaster()
    h = horizon_steps(est.horizon, step)
    n = len(y)
    n_train = math.floor(train_fraction * n)
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction {train_fraction} leaves no train or no test part of {n} steps")
    qs = tuple(float(q) for q in est.quantiles)
    block = n if refit_every is None else steps_in(refit_every, step)
    fb_pred, fb_method = seasonal_change(y, ok, horizon=h, step=step)

    forecast = np.full(n, np.nan)
    qpred = np.full((n, len(qs)), np.nan)
    method = np.full(n, "", dtype=object)
    notes: list[str] = []
    refits = 0
    for start in range(n_train, n, block):
        end = min(start + block, n)
        history = max(start - h + 1, 0)  # indices <= the block's first origin
        use_model = False
        try:
            model = clone(est).fit(y[:history], ts[:history], ok[:history])
            refits += 1
            logger.debug(
                "refit at %s on %d steps: holdout MAE %.4g (fallback %.4g), anchor weights %s",
                ts[start], history, model.validation_mae_, model.fallback_validation_mae_,
                np.round(model.weights_, 3),
            )  # fmt: skip
            use_model = not (guard and model.validation_mae_ > model.fallback_validation_mae_)
            if not use_model:
                notes.append(f"{ts[start]}: model worse than fallback on holdout; fallback used")
        except InsufficientHistory as exc:
            notes.append(f"{ts[start]}: {exc}; fallback used")
        if use_model:
            med, quant = model.predict_rows(y[:end], ts[:end], ok[:end], slice(start, end))
            forecast[start:end], qpred[start:end] = med, quant
            method[start:end] = np.where(np.isfinite(med), MODEL, "")
        missing = np.flatnonzero(~np.isfinite(forecast[start:end])) + start
        if len(missing):
            offsets = fallback_quantiles(y, fb_pred, history, qs)
            forecast[missing] = fb_pred[missing]
            qpred[missing] = np.maximum(np.expm1(np.log1p(fb_pred[missing])[:, None] + offsets[None, :]), 0.0)
            method[missing] = fb_method[missing]

    test = slice(n_train, n)
    day, week = steps_in(DAY, step), steps_in(WEEK, step)
    baselines = {
        "naive": lag(y, h)[test],
        "seasonal_daily": lag(y, seasonal_lag(day, h))[test],
        "seasonal_weekly": lag(y, seasonal_lag(week, h))[test],
        "seasonal_change": fb_pred[test],
    }
    actual = y[test]
    scored = ok[test] & np.isfinite(forecast[test])
    for b in baselines.values():
        scored &= np.isfinite(b)
    scales = {"1": _scale(y[:n_train], 1, n_train), "d": _scale(y[:n_train], day, n_train)}
    metrics: dict[str, dict[str, float]] = {}
    for name, pred in {"forecast": forecast[test], **baselines}.items():
        mae = float(np.mean(np.abs(pred[scored] - actual[scored]))) if scored.any() else math.nan
        metrics[name] = {
            "mae": mae,
            "mase_1": mae / scales["1"] if scales["1"] else math.nan,
            "mase_d": mae / scales["d"] if scales["d"] else math.nan,
            "n": int(scored.sum()),
        }
    if scored.any() and qs:
        q = qpred[test][scored]
        inside = (actual[scored] >= q.min(axis=1)) & (actual[scored] <= q.max(axis=1))
        metrics["forecast"]["coverage"] = float(inside.mean())
    return WalkForward(
        timestamps=ts[test],
        actual=actual,
        forecast=forecast[test],
        quantiles=qs,
        quantile_forecasts=qpred[test],
        method=method[test],
        baselines=baselines,
        scored=scored,
        metrics=metrics,
        scales=scales,
        n_train=n_train,
        refits=refits,
        notes=tuple(notes),
    )
