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

import bisect
import math
from dataclasses import dataclass, field
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
    one `season` (in steps) earlier. The residual quantiles are kept per *volatility bin*: the recent
    volatility (RMS of the last `vol_window` square-root differences) is cut into `bins` equally
    populated bins on the training data, so headroom is wide after bursts and narrow in calm spells
    of the same workload. `fit(y)` takes a regular series (NaN = missing); `predict(y, q)` gives, for
    every origin t, the quantile forecast of y[t + horizon] from y[.. t] only."""

    def __init__(
        self, horizon: int = 2, window: int = 10, season: int = 0, kind: str = CANDIDATE, bins: int = 5,
        vol_window: int = 10,
    ) -> None:  # fmt: skip
        self.horizon = horizon
        self.window = window
        self.season = season
        self.kind = kind
        self.bins = bins
        self.vol_window = vol_window

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

    def volatility(self, y: np.ndarray) -> np.ndarray:
        """RMS of the last `vol_window` first differences of sqrt(y), at every origin (causal)."""
        root = np.sqrt(np.maximum(np.asarray(y, dtype=float), 0.0))
        diff = np.concatenate([[np.nan], np.diff(root)])
        return np.sqrt(np.maximum(_trailing_mean(diff * diff, self.vol_window), 0.0))

    def fit(self, y: np.ndarray) -> LevelQuantileModel:
        y = np.asarray(y, dtype=float)
        h = self.horizon
        level = self.levels(y)[: len(y) - h] if len(y) > h else np.array([])
        vol = self.volatility(y)[: len(y) - h] if len(y) > h else np.array([])
        actual = y[h:]
        with np.errstate(invalid="ignore"):
            res = np.sqrt(np.maximum(actual, 0.0)) - np.sqrt(np.maximum(level, 0.0))
        ok = np.isfinite(res) & np.isfinite(actual) & np.isfinite(level)
        if ok.sum() < 20:
            raise ValueError(f"{self.kind}: {int(ok.sum())} usable residuals, need at least 20")
        pooled = np.quantile(res[ok], _LEVELS)
        known = ok & np.isfinite(vol)
        bins = self.bins if known.sum() >= 50 * self.bins else 1
        edges = np.quantile(vol[known], np.linspace(0, 1, bins + 1)[1:-1]) if bins > 1 else np.array([])
        which = np.searchsorted(edges, vol[known])
        rows = []
        for b in range(bins):
            chosen = res[known][which == b]
            rows.append(np.quantile(chosen, _LEVELS) if len(chosen) >= 50 else pooled)
        self.edges_ = edges
        self.residual_quantiles_ = np.vstack([*rows, pooled])  # the last row: volatility unknown
        self.__dict__.pop("_edge_list", None)  # the per-tick caches of `offset`
        self.n_residuals_ = int(ok.sum())
        return self

    def window_back(self) -> tuple[int, int]:
        """The steps, counted back from the origin, whose mean is the level: (first, last)."""
        if self.season == 0:
            return self.window - 1, 0
        return self.season - self.horizon + self.window // 2, self.season - self.horizon - (self.window - 1) // 2

    def recent_steps(self) -> int:
        """How many of the latest steps the volatility needs (counted back from the origin, inclusive)."""
        return self.vol_window + 1

    def _row(self, vol: float) -> int:
        if not math.isfinite(vol):
            return len(self.residual_quantiles_) - 1
        return bisect.bisect_left(self._edges(), vol)  # np.searchsorted's side="left"

    def _edges(self) -> list[float]:
        edges = self.__dict__.get("_edge_list")
        if edges is None or len(edges) != len(self.edges_):
            edges = self.__dict__["_edge_list"] = [float(e) for e in self.edges_]
            self.__dict__["_offsets"] = {}
        return edges

    def offset(self, q: float, vol: float = math.nan) -> float:
        """The residual quantile `q` for the volatility's bin (cached: a target asks the same few quantiles
        every tick)."""
        row = self._row(vol)
        cache = self.__dict__.setdefault("_offsets", {})
        key = (row, q)
        value = cache.get(key)
        if value is None:
            value = cache[key] = float(np.interp(q, _LEVELS, self.residual_quantiles_[row]))
        return value

    def from_level(self, level: float, q: float, vol: float = math.nan) -> float:
        """The quantile forecast for a level and the recent volatility (what `predict` does at one origin)."""
        return max(math.sqrt(max(level, 0.0)) + self.offset(q, vol), 0.0) ** 2

    def forecasts(self, level: float, quantiles: list[float], vol: float = math.nan) -> dict[float, float]:
        """`from_level` at several quantiles at once."""
        root = math.sqrt(max(level, 0.0))
        return {q: max(root + self.offset(q, vol), 0.0) ** 2 for q in quantiles}

    def recent_volatility(self, recent: np.ndarray) -> float:
        """The volatility at the last of `recent` (the latest `recent_steps()` values, oldest first): what
        `volatility` gives at that origin, in plain Python (it runs every tick on a dozen values)."""
        roots = [math.sqrt(max(float(v), 0.0)) if math.isfinite(v) else math.nan for v in recent]
        diffs = [b - a for a, b in zip(roots[-self.vol_window - 1 : -1], roots[-self.vol_window :], strict=False)]
        squares = [d * d for d in diffs if math.isfinite(d)]
        return math.sqrt(sum(squares) / len(squares)) if squares else math.nan

    def predict(self, y: np.ndarray, q: float) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        level = self.levels(y)
        vol = self.volatility(y)
        rows = np.where(np.isfinite(vol), np.searchsorted(self.edges_, np.nan_to_num(vol)),
                        len(self.residual_quantiles_) - 1)  # fmt: skip
        offsets = np.array([np.interp(q, _LEVELS, r) for r in self.residual_quantiles_])
        return np.maximum(np.sqrt(np.maximum(level, 0.0)) + offsets[rows], 0.0) ** 2

    def params(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "window": self.window, "season": self.season, "kind": self.kind,
                "bins": self.bins, "vol_window": self.vol_window}  # fmt: skip

    def to_record(self) -> dict[str, Any]:
        return {**self.params(), "edges": [float(v) for v in self.edges_],
                "residual_quantiles": [[float(v) for v in row] for row in self.residual_quantiles_],
                "n_residuals": self.n_residuals_}  # fmt: skip

    @classmethod
    def from_record(cls, params: dict[str, Any]) -> LevelQuantileModel:
        model = cls(int(params["horizon"]), int(params["window"]), int(params["season"]), str(params["kind"]),
                    int(params.get("bins", 1)), int(params.get("vol_window", 10)))  # fmt: skip
        table = np.asarray(params["residual_quantiles"], dtype=float)
        if table.ndim == 1:  # a record from before the volatility bins: one row, used for every volatility
            table = np.vstack([table, table])
        model.residual_quantiles_ = table
        model.edges_ = np.asarray(params.get("edges", []), dtype=float)
        model.n_residuals_ = int(params.get("n_residuals", 0))
        if table.shape[1] != len(_LEVELS) or len(model.edges_) != len(table) - 2:
            raise ValueError("stored model has a different quantile grid")
        return model


@dataclass(frozen=True)
class ModelChoice:
    chosen: LevelQuantileModel  # refitted on the whole history
    other: LevelQuantileModel  # fitted on the training part only
    baseline: str
    losses: dict[str, float]
    reason: str
    windows: dict[int, float] = field(default_factory=dict)  # validation loss per candidate level window


def choose_model(
    y: np.ndarray, *, horizon: int, window: int | tuple[int, ...], season: int, quantile: float, validation: int
) -> ModelChoice:
    """Fit the candidates (recent level, one per window in `window`) and the fallback on y[:-validation],
    score all by pinball loss at `quantile` on the last `validation` steps, and keep the best candidate
    only if it is not worse than the fallback.

    The fallback is seasonal naive (the same window one `season` earlier) when the training part holds
    a season plus enough residuals, else plain naive (the last value). Pure: no I/O."""
    y = np.asarray(y, dtype=float)
    windows = (window,) if isinstance(window, int) else tuple(window)
    split = len(y) - validation
    baseline = LevelQuantileModel(horizon, max(windows), season, SEASONAL_NAIVE)
    if season <= 0 or split - season - max(windows) < 200:
        baseline = LevelQuantileModel(horizon, 1, 0, NAIVE)

    def score(model: LevelQuantileModel) -> float:
        model.fit(y[:split])
        pred = model.predict(y, quantile)[split - horizon : len(y) - horizon]
        return pinball_loss(y[split:], pred, quantile)

    by_window: dict[int, float] = {}
    candidate: LevelQuantileModel | None = None
    for w in windows:
        model = LevelQuantileModel(horizon, w, 0, CANDIDATE)
        by_window[w] = loss = score(model)
        if candidate is None or (math.isfinite(loss) and not loss >= by_window[candidate.window]):
            candidate = model
    assert candidate is not None
    losses = {CANDIDATE: by_window[candidate.window], baseline.kind: score(baseline)}
    use = math.isfinite(losses[CANDIDATE]) and not losses[CANDIDATE] > losses[baseline.kind]
    chosen, other = (candidate, baseline) if use else (baseline, candidate)
    chosen.fit(y)
    reason = (f"{chosen.kind} (window {chosen.window}) pinball {losses[chosen.kind]:.4g} vs {other.kind} "
              f"{losses[other.kind]:.4g} on the last {validation} steps")  # fmt: skip
    if not use:
        reason = f"candidate not used: worse than {baseline.kind} ({reason})"
    return ModelChoice(chosen, other, baseline.kind, losses, reason, by_window)
