"""Streaming anomaly detection for one metric: a score in [0, 1] per point, strictly causal.

Why this design: the daemon scores live metrics (queue depth, latency, GPU use, generation cost)
it has never seen before, with one threshold for all of them. No single model works on all of
them, so several cheap, robust views of "surprise" are combined and then calibrated per metric:

1. *components* (each a strangeness per point, computed from past points only):
   level (robust z against the recent median/MAD), change (robust z of the first difference),
   seasonal residual (value minus the same time one to three days earlier, robust z), and shape
   (a ``LocalOutlierFactor`` on lagged windows of recent values, refit periodically on past
   windows only);
2. each component's strangeness becomes a p-value against its own recent values (rank, plus a
   fitted exponential tail beyond the 90th percentile), which puts units and tails on one scale;
   the Bonferroni minimum ``p`` gives the raw score ``-log10(p) / 10``;
3. the anomaly likelihood (``anomaly_likelihood``) turns raw scores into a tail probability and a
   score ``-log10(q) / 10`` (0.5 means q = 1e-5); a single extreme point (a spike) also counts
   on its own, since averaging would dilute it;
4. after a detection, scores are held below the threshold for ``suppress`` points: one incident,
   one alert, and the next incident is a new detection.

``AnomalyDetector`` follows the scikit-learn contract (hyperparameters in ``__init__``, learned
state ending in ``_``): ``fit(X, timestamps=...)`` consumes a series and keeps its training scores
in ``scores_``; ``score_samples`` scores points that follow the fitted series without changing the
detector; ``update(value, timestamp)`` scores and learns one live point. The three paths give the
same numbers. Non-finite values (NaN, inf, missing) score 0 and are not learned from. Timestamps
must not go backwards: a ``ConfigError`` names the row.
"""

from __future__ import annotations

import copy
import datetime as _dt
from typing import Any

import numpy as np

from empire.errors import ConfigError
from empire.models.anomaly_likelihood import AnomalyLikelihood, log_tail_score
from empire.models.anomaly_streams import Evidence, Novelty, RobustZ, SeasonalResidual, WindowOutlierModel

__all__ = ["DEFAULT_THRESHOLD", "AnomalyDetector", "to_seconds"]

# The score at and above which the daemon treats a point as anomalous (tail probability ~1e-5).
DEFAULT_THRESHOLD = 0.5


def to_seconds(timestamps: Any) -> np.ndarray:
    """Timestamps (epoch seconds, ``datetime``, ``datetime64`` or ISO strings) as float seconds."""
    arr = np.asarray(timestamps)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[us]").astype(np.int64) / 1e6
    if arr.dtype.kind in "iuf":
        return arr.astype(float)
    out = np.empty(arr.size)
    for i, v in enumerate(arr.reshape(-1)):
        if isinstance(v, _dt.datetime):
            out[i] = (v if v.tzinfo else v.replace(tzinfo=_dt.UTC)).timestamp()
        elif isinstance(v, np.datetime64):
            out[i] = v.astype("datetime64[us]").astype(np.int64) / 1e6
        elif isinstance(v, str):
            try:
                out[i] = float(v)
            except ValueError:
                d = _dt.datetime.fromisoformat(v.strip())
                out[i] = (d if d.tzinfo else d.replace(tzinfo=_dt.UTC)).timestamp()
        else:
            out[i] = float(v)
    return out


class AnomalyDetector:
    """Streaming anomaly detector; see the module docstring for the method.

    Parameters (all in points of the metric unless said otherwise):
        threshold: score at which ``predict`` flags a point and suppression starts.
        window: history used for medians/MADs of each component.
        calibration_window: history of each component's strangeness used for its rank p-value.
        season: seasonal period in seconds (``None`` disables the seasonal component).
        short_window, long_window, learning_period, min_std: the anomaly-likelihood step.
        suppress: points after a detection during which scores are capped below ``threshold``.
        min_history: points before a component's z-scores count.
    """

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        window: int = 600,
        calibration_window: int = 1500,
        season: float | None = 86400.0,
        short_window: int = 5,
        long_window: int = 1500,
        learning_period: int = 300,
        min_std: float = 0.05,
        suppress: int = 200,
        min_history: int = 30,
        lags: int = 0,
        refit_every: int = 500,
        train_size: int = 1000,
        reestimate_every: int = 20,
        point_evidence: bool = True,
        seasons: tuple = (86400.0, 604800.0),
        drift: float = 0.0,
        novelty_window: int = 20000,
        z_features: tuple = ("day",),
        novelty_features: tuple = ("value",),
        z_unit: float = 0.5,
        novelty_unit: float = 0.0,
        run_unit: float = 1.25,
        calib_min: int = 100,
        use_likelihood: bool = False,
        score_scale: float = 10.0,
    ) -> None:
        self.seasons = seasons
        self.drift = drift
        self.novelty_window = novelty_window
        self.z_features = tuple(z_features)
        self.novelty_features = tuple(novelty_features)
        self.z_unit = z_unit
        self.novelty_unit = novelty_unit
        self.run_unit = run_unit
        self.calib_min = calib_min
        self.use_likelihood = use_likelihood
        self.score_scale = score_scale
        self.threshold = threshold
        self.window = window
        self.calibration_window = calibration_window
        self.season = season
        self.short_window = short_window
        self.long_window = long_window
        self.learning_period = learning_period
        self.min_std = min_std
        self.suppress = suppress
        self.min_history = min_history
        self.lags = lags
        self.refit_every = refit_every
        self.train_size = train_size
        self.reestimate_every = reestimate_every
        self.point_evidence = point_evidence

    # -- scikit-learn contract -------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, *, timestamps: Any = None) -> AnomalyDetector:
        """Reset, then consume the series ``X`` (1-D or one column); training scores in ``scores_``."""
        self._reset()
        self.scores_ = self._consume(X, timestamps)
        return self

    def score_samples(self, X: Any, *, timestamps: Any = None) -> np.ndarray:
        """Anomaly scores in [0, 1] of points that follow the fitted series (detector unchanged).

        Unlike ``IsolationForest.score_samples`` higher means more anomalous: this is the score
        the daemon compares with ``threshold``.
        """
        self._check_fitted()
        return copy.deepcopy(self)._consume(X, timestamps)

    def decision_function(self, X: Any, *, timestamps: Any = None) -> np.ndarray:
        """``threshold - score``: negative for anomalies, as scikit-learn outlier detectors do."""
        return self.threshold - self.score_samples(X, timestamps=timestamps)

    def predict(self, X: Any, *, timestamps: Any = None) -> np.ndarray:
        """-1 for anomalies, 1 for normal points (scikit-learn's outlier convention)."""
        return np.where(self.decision_function(X, timestamps=timestamps) <= 0, -1, 1)

    def fit_predict(self, X: Any, y: Any = None, *, timestamps: Any = None) -> np.ndarray:
        """Fit on ``X`` and return its labels (-1 anomaly, 1 normal)."""
        self.fit(X, timestamps=timestamps)
        return np.where(self.scores_ >= self.threshold, -1, 1)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters, as scikit-learn's ``BaseEstimator.get_params``."""
        return {k: getattr(self, k) for k in _PARAMS}

    def set_params(self, **params: Any) -> AnomalyDetector:
        """Set hyperparameters; unknown names are a ``ConfigError``."""
        for k, v in params.items():
            if k not in _PARAMS:
                raise ConfigError(f"AnomalyDetector.{k}: unknown parameter; valid: {', '.join(_PARAMS)}")
            setattr(self, k, v)
        return self

    # -- online ------------------------------------------------------------------------------

    def update(self, value: float, timestamp: Any = None) -> float:
        """Score one new point and learn from it; returns its anomaly score in [0, 1]."""
        if not hasattr(self, "n_seen_"):
            self._reset()
            self.scores_ = np.empty(0)
        stamps = None if timestamp is None else [timestamp]
        return float(self._consume([value], stamps)[0])

    # -- internals ---------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_seen_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("AnomalyDetector is not fitted yet: call fit() or update() first")

    def _reset(self) -> None:
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ConfigError(f"AnomalyDetector.threshold: {self.threshold!r} is not in (0, 1]")
        for name in ("window", "calibration_window", "short_window", "long_window"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"AnomalyDetector.{name}: must be a positive number of points")
        self.n_seen_ = 0
        self.last_timestamp_: float | None = None
        self.suppressed_until_ = -1
        self.seasonal_ = {
            name: SeasonalResidual(_SEASONS[name])
            for name in _SEASONS
            if name in self.z_features or name in self.novelty_features
        }
        self.robust_ = {f: RobustZ(self.window, self.reestimate_every, self.min_history) for f in self.z_features}
        self.novel_ = {f: Novelty(self.novelty_window, self.reestimate_every) for f in self.novelty_features}
        units = [self.z_unit] * len(self.z_features) + [self.novelty_unit] * len(self.novelty_features)
        self.evidence_ = [
            Evidence(self.calibration_window, self.reestimate_every, self.drift, self.calib_min, u, self.run_unit)
            for u in units
        ]
        self.likelihood_ = AnomalyLikelihood(self.short_window, self.long_window, self.learning_period, self.min_std)
        self.last_value_: float | None = None

    def _consume(self, X: Any, timestamps: Any) -> np.ndarray:
        x = np.asarray(X, dtype=float)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise ConfigError(f"AnomalyDetector: expected one series, got shape {x.shape}")
        if timestamps is None:
            t = self.n_seen_ + np.arange(x.size, dtype=float)
        else:
            t = to_seconds(timestamps).reshape(-1)
            if t.size != x.size:
                raise ConfigError(f"AnomalyDetector: {t.size} timestamps for {x.size} values")
        self._check_order(t)
        finite = np.isfinite(x) & np.isfinite(t)
        scores = np.zeros(x.size)
        if finite.any():
            scores[finite] = self._score_finite(x[finite], t[finite])
        self.n_seen_ += x.size
        if t.size and np.isfinite(t).any():
            self.last_timestamp_ = float(t[np.isfinite(t)][-1])
        return scores

    def _check_order(self, t: np.ndarray) -> None:
        ok = np.isfinite(t)
        tt = t[ok]
        rows = np.flatnonzero(ok)
        prev = np.concatenate(([self.last_timestamp_ if self.last_timestamp_ is not None else -np.inf], tt[:-1]))
        bad = np.flatnonzero(tt < prev)
        if bad.size:
            k = int(bad[0])
            row = self.n_seen_ + int(rows[k])
            raise ConfigError(
                f"timestamps out of order at row {row}: {_fmt(tt[k])} is earlier than the previous "
                f"row's {_fmt(prev[k])}"
            )

    def _score_finite(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        prev = self.last_value_ if self.last_value_ is not None else x[0]
        diff = np.diff(np.concatenate(([prev], x)))
        self.last_value_ = float(x[-1])
        ones = np.ones(x.size, dtype=bool)
        feats = {"value": (x, ones), "diff": (diff, ones)}
        for name, seasonal in self.seasonal_.items():
            res = seasonal.process(t, x)
            ok = np.isfinite(res)
            feats[name] = (np.where(ok, res, 0.0), ok)
        z = []
        for f, robust in self.robust_.items():
            v, ok = feats[f]
            zz = np.zeros(x.size)
            zz[ok] = robust.process(v[ok])
            z.append((zz, ok))
        for f, novel in self.novel_.items():
            v, ok = feats[f]
            zz = np.zeros(x.size)
            zz[ok] = novel.process(v[ok])
            z.append((zz, ok))
        p = np.concatenate([e.process(zc, ok) for e, (zc, ok) in zip(self.evidence_, z, strict=True)], axis=1)
        point_p = np.minimum(1.0, p.shape[1] * p.min(axis=1))
        raw = log_tail_score(point_p)
        self.last_p_ = p
        if self.use_likelihood:
            tail = self.likelihood_.process(raw)
            if self.point_evidence:
                learned = self.likelihood_.seen - raw.size + np.arange(raw.size) >= self.learning_period
                tail = np.where(learned, np.minimum(1.0, 2.0 * np.minimum(tail, point_p)), tail)
        else:
            tail = point_p
        scores = np.clip(-np.log10(np.clip(tail, 1e-300, 1.0)) / self.score_scale, 0.0, 1.0) + 0.0
        position = (self.n_finite_ if hasattr(self, "n_finite_") else 0) + np.arange(x.size)
        scores[position < self.learning_period] = 0.0
        return self._suppress(scores)

    def _suppress(self, scores: np.ndarray) -> np.ndarray:
        out = scores.copy()
        cap = np.nextafter(float(self.threshold), 0.0)
        until = self.suppressed_until_
        start = self.n_finite_ if hasattr(self, "n_finite_") else 0
        for i in range(out.size):
            pos = start + i
            if pos <= until:
                out[i] = min(out[i], cap)
            elif out[i] >= self.threshold:
                until = pos + int(self.suppress)
        self.suppressed_until_ = until
        self.n_finite_ = start + out.size
        return out


_SEASONS = {"day": 86400.0, "week": 604800.0}

_PARAMS = (
    "threshold",
    "window",
    "calibration_window",
    "season",
    "short_window",
    "long_window",
    "learning_period",
    "min_std",
    "suppress",
    "min_history",
    "lags",
    "refit_every",
    "train_size",
    "reestimate_every",
    "point_evidence",
    "seasons",
    "drift",
    "novelty_window",
    "z_features",
    "novelty_features",
    "z_unit",
    "novelty_unit",
    "run_unit",
    "calib_min",
    "use_likelihood",
    "score_scale",
)


def _fmt(seconds: float) -> str:
    try:
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return repr(seconds)
