"""Streaming anomaly detection for one metric: a score in [0, 1] per point, strictly causal.

Why this design: the daemon scores live metrics (queue depth, latency, CPU, generation cost) it
has never seen before, with one threshold for all of them. So the detector asks three questions
that mean the same on any metric, turns each answer into a p-value against the metric's own
history, and reports how improbable the most surprising answer is:

1. *is this value new?* (``anomaly_streams.Novelty`` on the value, against its last
   ``novelty_window`` values): a level never seen before (a record-low temperature, a latency
   above every past one, CPU in a band it never visited) is the most general sign that something
   changed. This is what discretizing detectors (HTM's encoders, CAD OSE's contexts) react to,
   without their buckets. A *record* gets ``p = (recent record rate) x exp(-excess / spacing of
   the most extreme values)``; a value *inside* the range gets a p-value for its distance to the
   nearest earlier value (``novelty_interior``: ``"arrival"``, against the distances earlier
   values had on arrival, or ``"conformal"``, against the leave-one-out gaps of the history);
2. *is the local level new?* (the same on the ``smooth``-point rolling mean, defined once the
   window is full): a sustained move to a mean the metric never had (a burst of denser spikes, a
   machine running 20 degrees cooler, a slow slide to a new low) is novel in the rolling mean
   before any single point is: early detection of regime changes;
3. *is it wrong for the time of day?* (``SeasonalResidual`` + ``RobustZ``): how far is the value
   from the median of the same time ``n_seasons`` (5) seasons earlier, as a robust z against
   recent residuals? It sees values normal in level but not at this hour (a daily peak that did
   not happen, a flat line where there is usually a cycle);
4. the seasonal residual's z becomes a p-value against its own last ``calibration_window``
   values (``TailCalibrator``: conformal rank, plus a fitted exponential tail beyond the 90th
   percentile so that a value far beyond all past ones is rarer than "the largest seen"). Points
   where a stream is undefined (no seasonal reference yet) are neither scored nor learned from;
5. the Bonferroni minimum ``p`` over the streams gives the score ``-log10(p) / score_scale``
   clipped to [0, 1] (with the default scale 10, 0.5 means a nominal p = 1e-5), so one threshold
   serves every metric (what it means on noise, measured, is below); scores are 0 for the first
   ``learning_period`` points;
6. after a detection, scores are held just below the threshold for ``suppress`` (100) sampling
   steps, a duration (the median interval of the first timestamps times ``suppress``): one
   incident, one alert, and the next incident is a new detection. A duration, not a count of
   points, so that a sensor with gaps (NAB's traffic files) does not hold an incident for days.

What the default threshold means, measured (``FALSE_ALARMS_PER_10K``): on stationary noise, 1 to
11 alarms per 10,000 points depending on the shape (Gaussian, Student-t, log-normal, Poisson,
AR(1), daily cycle, sparse spikes, uniform, exponential; 7.5 on average), and exactly the same at
any scale and offset (every stream is affine-invariant). None on NAB's artificialNoAnomaly files.
The nominal p = 1e-5 would give 0.1: the "arrival" interior tail is anti-conservative. Per stream
on Gaussian noise, p <= 3.3e-6 happens 5 (value) and 10 (rolling mean) times per 10,000 points
instead of 0.03: the distance of a value to its nearest earlier one is heavy-tailed in the sparse
tails of the distribution, and an exponential tail fitted to 1,500 of them extrapolates too far.

Benchmark (``benchmarks/anomaly.py``: NAB v1.1 standard profile, fixed threshold 0.5, the 37
development files ``nab-dev`` + ``nab-extra``; Numenta HTM 67.65 on the same files):

* defaults (``n_seasons=5``, ``suppress=100`` steps): 72.98 on all 37 (dev 18: 74.30, extra 19:
  72.08; ad exchange 51.5, traffic 55.3, AWS 78.7, tweets 84.7, known cause 69.8, artificial
  88.6); leave-one-category-out over a 7-point grid around them: 71.18 averaged over categories,
  worst 51.5 (ad exchange), 72.55 pooled, against 74.05 in-sample. Suppression counted in points
  instead of time scored 73.06 but 44.6 on traffic held out (the other categories picked 200
  points, which on its irregular sampling lasted over a day and hid two close windows); as a
  duration, traffic scores 55.3-56.0 for any suppression from 60 to 200 steps;
* the previous defaults (``n_seasons=1``, ``suppress=200``), tuned on dev 18 alone: 75.51 on dev 18
  but 65.25 on extra 19 (ad exchange 34.0, traffic 44.6). The median of five days as the seasonal
  reference is less disturbed by one odd day on hourly series (ad exchange) and bursty ones
  (tweets); 200 points of suppression are 8 days of hourly data and hid later windows;
* a Pareto tail for the arrival distances (the exponential tail fitted on their logarithm):
  noise alarms fall from 6.7 to 1.2 per 10,000 points (nine shapes) but NAB falls to 57.2 on
  all 37 (known cause 71 -> 45) and no threshold brings it above 57.5: much of the detector's
  power on real series comes from that same tail, so the calibrated version was not shipped;
* ``novelty_floor=True`` (an arrival p-value is never below the share of the last 20,000
  distances at least as large, ``RankFloor``): noise alarms 7.5 -> 1.7 per 10,000 points (nine
  shapes; Gaussian 0.3, sparse spikes 5.7) but NAB 73.0 -> 65.3 on all 37 (known cause 70 -> 52,
  AWS 79 -> 71). On the value stream alone: 4.5 and 70.1; on the rolling mean alone: 5.1 and
  70.9. Kept as an option for a quiet pager, not the default;
* recalibrating each stream's p-value against its own history (conformal rank of ``-log p`` with an
  exponential tail): noise 6.7 -> 6.1 per 10,000, NAB 69.4 -> 57.4. The rare extreme raw p-values
  (about 5 per 10,000 points) are too rare for a 1,500-point tail fit to see;
* one knob at a time from the defaults: ``score_scale=9`` 74.1 (more noise alarms), ``smooth=288``
  65.5, ``calibration_window=2000`` 69.8 (with ``n_seasons=3``), ``novelty_window=10000`` 69.9
  (idem), ``n_seasons=7`` 71.8, ``suppress=150`` 72.2 (ad exchange 34.0): single windows move a
  small category by 15 points, which is why the cross-validated figure is the one to trust.

Earlier, on dev 18 alone: ``novelty_interior="conformal"`` (leave-one-out gaps) gives 2.5 noise
alarms per 10,000 and 65.2; it assumes a stationary metric. The rolling mean always uses
``"arrival"``: a smooth path crosses every level between its extremes, so leave-one-out gaps say
nothing about it.

What was measured and left out (``benchmarks/anomaly.py``, NAB dev subset): a level z against the
recent median, a z of the first difference, a weekly residual, novelty of the rolling standard
deviation, a ``LocalOutlierFactor`` on lagged windows, a CUSUM of each stream's surprisal and
Numenta's anomaly-likelihood smoothing each found a window or two but cost more in false alarms
and Bonferroni dilution than they gained. The features stay selectable
(``z_features``/``novelty_features`` from ``FEATURES``).

``AnomalyDetector`` follows the scikit-learn contract (hyperparameters in ``__init__``, learned
state ending in ``_``): ``fit(X, timestamps=...)`` consumes a series and keeps its training scores
in ``scores_``; ``score_samples`` scores points that follow the fitted series without changing the
detector; ``partial_fit`` consumes the next block of a long series; ``update(value, timestamp)``
scores and learns one live point. The paths give the same numbers. Non-finite values (NaN, inf,
missing) score 0 and are not learned from. Timestamps must not go backwards: by default a
``ConfigError`` names the row; with ``unordered="keep"`` a point stamped earlier than its
predecessor is scored in arrival order and placed at the latest timestamp seen so far for
seasonal lookups (a clock adjustment in an export).
"""

from __future__ import annotations

import copy
import datetime as _dt
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin

from empire.errors import ConfigError
from empire.models.anomaly_streams import Novelty, RobustZ, Rolling, SeasonalResidual, TailCalibrator

__all__ = ["DEFAULT_THRESHOLD", "FALSE_ALARMS_PER_10K", "FEATURES", "AnomalyDetector", "to_seconds"]

# The score at and above which the daemon treats a point as anomalous (nominal p = 1e-5 after
# Bonferroni; see FALSE_ALARMS_PER_10K for what it means on noise, measured).
DEFAULT_THRESHOLD = 0.5

# What DEFAULT_THRESHOLD means, measured: on stationary noise of any scale, offset and shape
# (Gaussian, Student-t, log-normal, Poisson counts, AR(1), ...), at most this many alarms per
# 10,000 points (tests/unit/test_anomaly.py checks it). The nominal p-value would say 0.1: the
# novelty stream's interior tail is anti-conservative (see the module docstring).
FALSE_ALARMS_PER_10K = 12.0

# Series a stream can be computed on: the value, its first difference, its residual from one
# season earlier, and its rolling mean and standard deviation over ``smooth`` points.
FEATURES = ("value", "diff", "season", "mean", "std")

# Tail-scale floor of the robust-z calibrators: never claim a tail lighter than a Gaussian's (the
# mean excess of |z| over its 90th percentile is ~0.45).
Z_UNIT = 0.5

# Features whose series is a smooth path (see ``Novelty``'s interior models).
_SMOOTH_FEATURES = ("mean", "std")


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


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """Streaming anomaly detector; see the module docstring for the method.

    Parameters (all in points of the metric unless said otherwise):
        threshold: score at which ``predict`` flags a point and suppression starts.
        season: seasonal period in seconds for the ``season`` feature (``None`` disables it).
        n_seasons: the seasonal reference is the median of the values ``1..n_seasons`` seasons
            earlier (1: the same time yesterday).
        smooth: points in the rolling mean and standard deviation (``mean``, ``std``).
        novelty_window: history of values the novelty streams compare each value with.
        novelty_interior: p-value of a value inside the range seen: ``"arrival"`` or
            ``"conformal"`` (see the module docstring for the measured trade-off).
        novelty_floor: an "arrival" p-value is never below how often the last ``novelty_window``
            distances reached it (``RankFloor``): a quieter, better calibrated detector that finds
            fewer NAB windows (measured trade-off in the module docstring).
        window: history of residuals for the robust z of the ``z_features``.
        calibration_window: history of strangeness values a p-value is computed against.
        calibration_min: values a calibrator needs before it gives p < 1.
        z_features, novelty_features: which series (``FEATURES``) get a robust-z stream and a
            novelty stream.
        score_scale: score = ``-log10(p) / score_scale``.
        suppress: points after a detection during which scores are capped below ``threshold``.
        learning_period: first points that always score 0.
        min_history: points before a robust z counts.
        reestimate_every: points between re-estimates of medians, quantiles and sorted histories.
        unordered: ``"error"`` (timestamps going backwards are a ``ConfigError``) or ``"keep"``.
    """

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        season: float | None = 86400.0,
        n_seasons: int = 5,
        smooth: int = 144,
        novelty_window: int = 20000,
        novelty_interior: str = "arrival",
        novelty_floor: bool = False,
        window: int = 600,
        calibration_window: int = 1500,
        calibration_min: int = 100,
        z_features: tuple[str, ...] = ("season",),
        novelty_features: tuple[str, ...] = ("value", "mean"),
        score_scale: float = 10.0,
        suppress: int = 100,
        learning_period: int = 300,
        min_history: int = 30,
        reestimate_every: int = 20,
        unordered: str = "error",
    ) -> None:
        self.threshold = threshold
        self.season = season
        self.n_seasons = n_seasons
        self.smooth = smooth
        self.novelty_window = novelty_window
        self.novelty_interior = novelty_interior
        self.novelty_floor = novelty_floor
        self.window = window
        self.calibration_window = calibration_window
        self.calibration_min = calibration_min
        self.z_features = z_features
        self.novelty_features = novelty_features
        self.score_scale = score_scale
        self.suppress = suppress
        self.learning_period = learning_period
        self.min_history = min_history
        self.reestimate_every = reestimate_every
        self.unordered = unordered

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

    def partial_fit(self, X: Any, y: Any = None, *, timestamps: Any = None) -> AnomalyDetector:
        """Consume ``X`` after what was already seen (a first call starts fresh); its scores in
        ``scores_``. A long series fed in blocks scores exactly as ``fit`` on it whole, in memory
        proportional to the block (``fit`` holds several arrays per point: ~2.5 KB)."""
        if not hasattr(self, "n_seen_"):
            self._reset()
        self.scores_ = self._consume(X, timestamps)
        return self

    def fit_predict(self, X: Any, y: Any = None, *, timestamps: Any = None) -> np.ndarray:
        """Fit on ``X`` and return its labels (-1 anomaly, 1 normal)."""
        self.fit(X, timestamps=timestamps)
        return np.where(self.scores_ >= self.threshold, -1, 1)

    def set_params(self, **params: Any) -> AnomalyDetector:
        """Set hyperparameters (``BaseEstimator.set_params``); unknown names are a ``ConfigError``."""
        names = self._get_param_names()
        for k in params:
            if k not in names:
                raise ConfigError(f"AnomalyDetector.{k}: unknown parameter; valid: {', '.join(names)}")
        super().set_params(**params)
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

    def _validate(self) -> None:
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ConfigError(f"AnomalyDetector.threshold: {self.threshold!r} is not in (0, 1]")
        for name in ("window", "calibration_window", "novelty_window", "reestimate_every", "smooth", "n_seasons"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"AnomalyDetector.{name}: must be a positive number of points")
        if float(self.score_scale) <= 0:
            raise ConfigError(f"AnomalyDetector.score_scale: {self.score_scale!r} must be positive")
        if self.season is not None and float(self.season) <= 0:
            raise ConfigError(f"AnomalyDetector.season: {self.season!r} must be a positive number of seconds or None")
        for name in ("z_features", "novelty_features"):
            bad = [f for f in getattr(self, name) if f not in FEATURES]
            if bad:
                raise ConfigError(f"AnomalyDetector.{name}: unknown {bad}; valid: {', '.join(FEATURES)}")
        if not (self.z_features or self.novelty_features):
            raise ConfigError("AnomalyDetector: z_features and novelty_features are both empty")
        if self.novelty_interior not in ("conformal", "arrival"):
            raise ConfigError(f"AnomalyDetector.novelty_interior: {self.novelty_interior!r}; valid: conformal, arrival")
        if self.unordered not in ("error", "keep"):
            raise ConfigError(f"AnomalyDetector.unordered: {self.unordered!r}; valid: error, keep")

    def _reset(self) -> None:
        self._validate()
        self.n_seen_ = 0
        self.n_finite_ = 0
        self.last_timestamp_: float | None = None
        self.last_value_: float | None = None
        self.suppressed_until_ = -np.inf  # timestamp up to which scores are held below the threshold
        self.first_stamps_ = np.empty(0)  # the first finite timestamps, for the sampling step
        every = int(self.reestimate_every)
        wanted = set(self.z_features) | set(self.novelty_features)
        self.rolling_ = Rolling(int(self.smooth)) if {"mean", "std"} & wanted else None
        self.seasonal_ = (
            SeasonalResidual(float(self.season), int(self.n_seasons)) if self.season and "season" in wanted else None
        )
        # One (feature, transform, calibrator) per stream, in a fixed order; a novelty stream
        # gives p-values itself (calibrator None).
        self.streams_: list[tuple[str, Any, TailCalibrator | None]] = []
        # Without a season there is no seasonal series: its streams are left out (not counted in
        # the Bonferroni correction).
        z_features = [f for f in self.z_features if f != "season" or self.seasonal_ is not None]
        novelty_features = [f for f in self.novelty_features if f != "season" or self.seasonal_ is not None]
        for f in z_features:
            robust = RobustZ(int(self.window), every, int(self.min_history))
            self.streams_.append((f, robust, self._calibrator(Z_UNIT)))
        for f in novelty_features:
            # The rolling mean is a smooth path through every level between its extremes: its
            # interior novelty is judged against past arrivals, not leave-one-out gaps.
            novelty = Novelty(
                int(self.novelty_window),
                every,
                interior="arrival" if f in _SMOOTH_FEATURES else self.novelty_interior,
                calibration_window=int(self.calibration_window),
                calibration_min=int(self.calibration_min),
                floor=bool(self.novelty_floor),
            )
            self.streams_.append((f, novelty, None))

    def _calibrator(self, unit: float) -> TailCalibrator:
        return TailCalibrator(
            int(self.calibration_window),
            int(self.reestimate_every),
            min_history=int(self.calibration_min),
            min_beta=unit,
        )

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
        if self.unordered == "keep":
            t = self._latest_so_far(t)
        else:
            self._check_order(t)
        finite = np.isfinite(x) & np.isfinite(t)
        scores = np.zeros(x.size)
        if finite.any():
            scores[finite] = self._score_finite(x[finite], t[finite])
        self.n_seen_ += x.size
        if t.size and np.isfinite(t).any():
            self.last_timestamp_ = float(t[np.isfinite(t)][-1])
        return scores

    def _latest_so_far(self, t: np.ndarray) -> np.ndarray:
        """Each finite timestamp raised to the latest one seen before it (NaN stays NaN)."""
        ok = np.isfinite(t)
        if not ok.any():
            return t
        start = self.last_timestamp_ if self.last_timestamp_ is not None else -np.inf
        out = t.copy()
        out[ok] = np.maximum.accumulate(np.maximum(t[ok], start))
        return out

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
        ok_all = np.ones(x.size, dtype=bool)
        series: dict[str, tuple[np.ndarray, np.ndarray]] = {"value": (x, ok_all)}
        prev = self.last_value_ if self.last_value_ is not None else x[0]
        series["diff"] = (np.diff(np.concatenate(([prev], x))), ok_all)
        self.last_value_ = float(x[-1])
        if self.rolling_ is not None:
            mean, std = self.rolling_.process(x)
            # Defined once the window is full: a mean of the first few points is not a level.
            full = self.n_finite_ + np.arange(x.size) >= int(self.smooth) - 1
            series["mean"], series["std"] = (mean, full), (std, full)
        if self.seasonal_ is not None:
            res = self.seasonal_.process(t, x)
            series["season"] = (res, np.isfinite(res))
        p = np.ones((x.size, len(self.streams_)))
        for k, (feature, transform, calibrator) in enumerate(self.streams_):
            if feature not in series:
                continue
            v, ok = series[feature]
            # Only where the series is defined: a stream that starts late is not judged against zeros.
            out = transform.process(v[ok])
            p[ok, k] = out if calibrator is None else calibrator.process(out)
        self.last_p_ = p  # per-stream p-values of the last block (diagnostics)
        bonferroni = np.minimum(1.0, p.shape[1] * p.min(axis=1))
        scores = np.clip(-np.log10(np.maximum(bonferroni, 1e-300)) / float(self.score_scale), 0.0, 1.0) + 0.0
        position = self.n_finite_ + np.arange(x.size)
        scores[position < int(self.learning_period)] = 0.0
        return self._suppress(scores, t)

    def _suppress(self, scores: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Hold scores below the threshold for ``suppress`` sampling steps after a detection.

        A duration, not a count of points: a sensor that reports irregularly (gaps of several
        steps) would otherwise hold an incident for days. The step is the median interval of the
        first ``_STEP_POINTS`` timestamps (those before the detection when it comes earlier), so
        batch and online scoring agree.
        """
        out = scores.copy()
        cap = np.nextafter(float(self.threshold), 0.0)
        until = self.suppressed_until_
        start = self.n_finite_
        need = _STEP_POINTS - self.first_stamps_.size
        if need > 0:
            self.first_stamps_ = np.concatenate([self.first_stamps_, t[:need]])
        for i in np.flatnonzero(out >= min(cap, float(self.threshold))):
            if t[i] <= until:
                out[i] = min(out[i], cap)
            elif out[i] >= self.threshold:
                until = t[i] + int(self.suppress) * self._step(start + int(i))
        self.suppressed_until_ = until
        self.n_finite_ = start + out.size
        return out

    def _step(self, position: int) -> float:
        stamps = self.first_stamps_[: position + 1]
        d = np.diff(stamps)
        d = d[d > 0]
        return float(np.median(d)) if d.size else 1.0


# Timestamps the sampling step is estimated from (``AnomalyDetector._suppress``).
_STEP_POINTS = 16


def _fmt(seconds: float) -> str:
    try:
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return repr(seconds)
