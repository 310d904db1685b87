"""Short-horizon quantile models of demand: what predictive *scaling* acts on (issue 5). PURE numpy.

Why a short-horizon quantile model of its own: a replica asked for now is ready `scheduling_buffer`
later, so what scaling needs is *the demand `scheduling_buffer` from now, at a high quantile*, fresh
every tick. Hourly-style models (`empire.models.forecast.DemandForecaster`, which answers the
`predictive.horizon` question: demand an hour ahead) answer a different question; per-minute demand
is dominated by bursty noise (NASA-HTTP: variance about 6x the mean), so at a few minutes' horizon
the recent level carries nearly all the signal and the quantile is what matters.
`LevelQuantileModel` is that model, with the scikit-learn contract (hyperparameters in `__init__`,
`fit` returns self, learned state ends in `_`):

    forecast(t + h) at quantile q = (sqrt(level_t) + Q_q(residuals))^2

where the level is the mean of a window of past steps (`season=0`), or of the same window one
season earlier (the seasonal-naive fallback), and the residuals are out-of-sample
`sqrt(y[t+h]) - sqrt(level_t)` on the history: the square root stabilises count noise (Poisson
variance grows with the mean), so one residual distribution serves night and peak.

`choose_model` fits the candidate (recent level) and the fallback (seasonal naive, or plain naive on
a history shorter than a season), scores both by pinball loss at the policy's quantile on a recent
validation span, and never keeps a candidate worse than the fallback. The service that fetches
history, refits on a schedule and registers models is `empire.agent.predictive.ForecastService`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CANDIDATE",
    "MODEL_KINDS",
    "NAIVE",
    "SEASONAL_NAIVE",
    "LevelQuantileModel",
    "ModelChoice",
    "choose_model",
    "pinball_loss",
]

CANDIDATE, SEASONAL_NAIVE, NAIVE = "recent_level", "seasonal_naive", "naive"
MODEL_KINDS = (CANDIDATE, SEASONAL_NAIVE, NAIVE)
_LEVELS = np.concatenate([np.linspace(0.0, 0.9, 91), np.linspace(0.9, 1.0, 201)[1:]])  # fine in the tail


def pinball_loss(actual: np.ndarray, forecast: np.ndarray, q: float) -> float:
    """Mean quantile (pinball) loss over the rows where both are finite; NaN when there are none."""
    ok = np.isfinite(actual) & np.isfinite(forecast)
    if not ok.any():
        return math.nan
    diff = actual[ok] - forecast[ok]
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


def _trailing_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the valid values among y[i-window+1 .. i] (NaN when none is valid)."""
    ok = np.isfinite(y)
    vals = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    cnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(len(y)) + 1
    lo = np.maximum(idx - window, 0)
    n = cnt[idx] - cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (vals[idx] - vals[lo]) / np.maximum(n, 1), np.nan)


class LevelQuantileModel:
    """Quantile forecast of y[t + horizon] from a level and out-of-sample residuals (see module doc).

    `window` steps are averaged: the last ones (`season=0`), or the ones centred on the target's time
    one `season` (in steps) earlier. `fit(y)` takes a regular series (NaN = missing); `predict(y, q)`
    gives, for every origin t, the quantile forecast of y[t + horizon] from y[.. t] only."""

    def __init__(self, horizon: int = 2, window: int = 10, season: int = 0, kind: str = CANDIDATE) -> None:
        self.horizon = horizon
        self.window = window
        self.season = season
        self.kind = kind

    def levels(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        trailing = _trailing_mean(y, self.window)
        if self.season == 0:
            return trailing
        # centred on c = t + h - season: the trailing mean ending at c + (window - 1) // 2
        shift = self.horizon - self.season + (self.window - 1) // 2
        out = np.full(len(y), np.nan)
        src = np.arange(len(y)) + shift
        inside = (src >= 0) & (src < len(y))
        out[inside] = trailing[src[inside]]
        return out

    def fit(self, y: np.ndarray) -> LevelQuantileModel:
        y = np.asarray(y, dtype=float)
        h = self.horizon
        level = self.levels(y)[: len(y) - h] if len(y) > h else np.array([])
        actual = y[h:]
        with np.errstate(invalid="ignore"):
            res = np.sqrt(np.maximum(actual, 0.0)) - np.sqrt(np.maximum(level, 0.0))
        res = res[np.isfinite(res) & np.isfinite(actual) & np.isfinite(level)]
        if len(res) < 20:
            raise ValueError(f"{self.kind}: {len(res)} usable residuals, need at least 20")
        self.residual_quantiles_ = np.quantile(res, _LEVELS)
        self.n_residuals_ = len(res)
        return self

    def window_back(self) -> tuple[int, int]:
        """The steps, counted back from the origin, whose mean is the level: (first, last)."""
        if self.season == 0:
            return self.window - 1, 0
        return self.season - self.horizon + self.window // 2, self.season - self.horizon - (self.window - 1) // 2

    def from_level(self, level: float, q: float) -> float:
        """The quantile forecast for a level (what `predict` does at one origin)."""
        return max(math.sqrt(max(level, 0.0)) + self.offset(q), 0.0) ** 2

    def offset(self, q: float) -> float:
        return float(np.interp(q, _LEVELS, self.residual_quantiles_))

    def predict(self, y: np.ndarray, q: float) -> np.ndarray:
        level = self.levels(np.asarray(y, dtype=float))
        return np.maximum(np.sqrt(np.maximum(level, 0.0)) + self.offset(q), 0.0) ** 2

    def params(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "window": self.window, "season": self.season, "kind": self.kind}

    def to_record(self) -> dict[str, Any]:
        return {**self.params(), "residual_quantiles": [round(float(v), 6) for v in self.residual_quantiles_],
                "n_residuals": self.n_residuals_}  # fmt: skip

    @classmethod
    def from_record(cls, params: dict[str, Any]) -> LevelQuantileModel:
        model = cls(int(params["horizon"]), int(params["window"]), int(params["season"]), str(params["kind"]))
        model.residual_quantiles_ = np.asarray(params["residual_quantiles"], dtype=float)
        model.n_residuals_ = int(params.get("n_residuals", 0))
        if len(model.residual_quantiles_) != len(_LEVELS):
            raise ValueError("stored model has a different quantile grid")
        return model


@dataclass(frozen=True)
class ModelChoice:
    chosen: LevelQuantileModel  # refitted on the whole history
    other: LevelQuantileModel  # fitted on the training part only
    baseline: str
    losses: dict[str, float]
    reason: str


def choose_model(
    y: np.ndarray, *, horizon: int, window: int, season: int, quantile: float, validation: int
) -> ModelChoice:
    """Fit the candidate (recent level) and the fallback on y[:-validation], score both by pinball loss
    at `quantile` on the last `validation` steps, and keep the candidate only if it is not worse.

    The fallback is seasonal naive (the same window one `season` earlier) when the training part holds
    a season plus enough residuals, else plain naive (the last value). Pure: no I/O."""
    y = np.asarray(y, dtype=float)
    split = len(y) - validation
    candidate = LevelQuantileModel(horizon, window, 0, CANDIDATE)
    baseline = LevelQuantileModel(horizon, window, season, SEASONAL_NAIVE)
    if season <= 0 or split - season - window < 200:
        baseline = LevelQuantileModel(horizon, 1, 0, NAIVE)
    losses: dict[str, float] = {}
    for model in (candidate, baseline):
        model.fit(y[:split])
        pred = model.predict(y, quantile)[split - horizon : len(y) - horizon]
        losses[model.kind] = pinball_loss(y[split:], pred, quantile)
    use = math.isfinite(losses[CANDIDATE]) and not losses[CANDIDATE] > losses[baseline.kind]
    chosen, other = (candidate, baseline) if use else (baseline, candidate)
    chosen.fit(y)
    reason = (f"{chosen.kind} pinball {losses[chosen.kind]:.4g} vs {other.kind} {losses[other.kind]:.4g} "
              f"on the last {validation} steps")  # fmt: skip
    if not use:
        reason = f"candidate not used: worse than {baseline.kind} ({reason})"
    return ModelChoice(chosen, other, baseline.kind, losses, reason)
