"""Honest evaluation of the models: walk-forward for the forecaster, leave-one-group-out for detectors.

Walk-forward evaluation of the demand forecaster against the naive baselines, on the same rows.

Fits on the first part of a series, then walks forward through the rest making every forecast only
from data at or before its origin (refitting every ``refit_every``), and scores the model and the
naive forecasts (last value, same time yesterday, same time last week, the seasonal fallback) with
MAE, MASE_1 and MASE_d as defined in the traces' BASELINES.md. `empire forecast` and
`benchmarks/forecast.py` share it, so the CLI prints what the benchmark measures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import LeaveOneGroupOut

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

__all__ = ["GroupCV", "WalkForward", "leave_one_group_out", "walk_forward"]

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


@dataclass(frozen=True)
class GroupCV:
    """Leave-one-group-out scores of a detector whose parameters are chosen from ``candidates``.

    ``in_sample``: the index of the candidate with the best score on all items, and its score per
    group. ``chosen[g]``: the candidate picked on every group but ``g``; ``held_out[g]``: its score
    on ``g``, which played no part in the choice. A held-out score well below the in-sample one
    means the parameters were tuned to the data, not general. Groups the score cannot judge (it
    returns NaN, e.g. series with no labelled anomaly) are left out of ``mean``/``worst``.
    """

    candidates: tuple[dict[str, Any], ...]
    in_sample: int
    in_sample_scores: dict[str, float]
    chosen: dict[str, int]
    held_out: dict[str, float]

    @property
    def mean(self) -> float:
        return _nanmean(self.held_out.values())

    @property
    def worst(self) -> float:
        ok = [v for v in self.held_out.values() if math.isfinite(v)]
        return min(ok) if ok else math.nan

    @property
    def in_sample_mean(self) -> float:
        return _nanmean(self.in_sample_scores.values())


def _nanmean(values: Any) -> float:
    ok = [v for v in values if math.isfinite(v)]
    return float(np.mean(ok)) if ok else math.nan


def leave_one_group_out(
    groups: Sequence[str],
    candidates: Sequence[dict[str, Any]],
    score: Callable[[int, np.ndarray], float],
) -> GroupCV:
    """Choose parameters on all groups but one, score the one left out; once per group.

    ``groups[i]`` is the group (a NAB category, a kind of metric) of item ``i`` (a series);
    ``score(k, items)`` is the score (higher is better) of candidate ``k`` on the items with those
    indices, pooled. Selection is the first best candidate, so put the default first: a tie keeps
    it. The splits are scikit-learn's ``LeaveOneGroupOut``; ``score`` is called with the same
    arguments many times, so a caller that runs a detector caches its per-item outputs.
    """
    g = np.asarray(groups)
    if not len(candidates):
        raise ValueError("leave_one_group_out: no candidates")
    items = np.arange(g.size)

    def best(idx: np.ndarray) -> int:
        values = [score(k, idx) for k in range(len(candidates))]
        return int(np.nanargmax(values)) if any(math.isfinite(v) for v in values) else 0

    chosen: dict[str, int] = {}
    held_out: dict[str, float] = {}
    for train, test in LeaveOneGroupOut().split(items, groups=g):
        name = str(g[test[0]])
        chosen[name] = best(train)
        held_out[name] = float(score(chosen[name], test))
    overall = best(items)
    names = sorted(set(g.tolist()))
    in_sample = {n: float(score(overall, items[g == n])) for n in names}
    return GroupCV(tuple(dict(c) for c in candidates), overall, in_sample, chosen, held_out)
