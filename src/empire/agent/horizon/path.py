"""Horizon forecasts: demand `predictive.horizon` ahead (and each predicted_breach rule's horizon ahead).

Why a second forecaster beside `ForecastService`: scaling needs the demand a pod start-up away
(`scheduling_buffer`, minutes) at a high quantile, fresh every tick, and the short-term
`LevelQuantileModel` is best at that. "Will the queue cross 500 within the hour?" is a different
question: at an hour the daily and weekly shape matters, which the gradient-boosted
`DemandForecaster` (`empire.models.forecast`) learns from the same history. So each *key*
(target, signal) that someone asks about gets one:

* asked by the target itself when `predictive.mode` is not `off` (horizon `predictive.horizon`,
  on its demand signal), and by every `predicted_breach` alert rule (its own `horizon`, on its
  signal), even when the target's scaling is not predictive;
* **grid step**: the history is resampled to the largest of 1, 2, 5, 10, 15, 30, 60 minutes that is
  at most a twelfth of the shortest horizon asked (60 min -> 5 min, 2 h -> 10 min, 6 h -> 30 min,
  30 min -> 2 min), so a horizon is at least 12 steps and 14 days of history are a few thousand
  rows. Each step is the mean of the samples fetched within it (`query_range` at up to 10 samples
  per step, never finer than the loop's interval); a step with fewer than half its samples is a gap;
* **one direct model per horizon asked**: `DemandForecaster(horizon=...)` for each distinct horizon
  (rounded down to whole steps; the defaults, 1 h for scaling and 60 min for rules, coincide, so
  usually one model). A rule therefore reads a real forecast at its own horizon, not a truncated
  or stretched one. Each is **guarded** as `forecast_demand(guard=True)` is: a model whose holdout
  MAE is worse than its seasonal fallback's is not used (the fallback forecast is), and a history
  shorter than the model needs (3 days) uses the fallback with that reason;
* **the path** between now and the horizon is honest about what it knows: its first point is the
  last complete step as observed, the model points are forecasts, and the points in between, one
  per step, are straight-line interpolations (model name `interpolated`). A predicted_breach rule
  fires when any point up to its horizon crosses; an interpolated crossing only places the breach
  in time (the `breach_in` annotation), it never creates one the model points do not show;
* refits follow `predictive.refit_every` (sooner while the history is young) in a worker thread,
  go to the model registry as `horizon:<target>/<signal>` with the holdout MAE of the model and
  of the fallback per horizon and the fitted models serialised with skops (loaded back only with
  an allow-list of types, never unpickled), and are restored from there at start;
* the path is recomputed once per completed step, fetching only the steps since the last one.

Everything from policy to path that does not fetch is pure and tested on its own
(`horizon_specs`, `grid_step`, `bucket_means`, `build_path`, `fit_leads`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import clone

from empire.agent.types import Forecast
from empire.models.forecast import (
    MODEL,
    DemandForecaster,
    InsufficientHistory,
    fallback_forecast,
    quantile_name,
)
from empire.policies.alerting import RuleKind
from empire.policies.durations import format_duration
from empire.policies.scaling import PredictiveMode

if TYPE_CHECKING:
    from empire.policies.schema import Policy

__all__ = [
    "BASE_QUANTILES",
    "INTERPOLATED",
    "OBSERVED",
    "HorizonPath",
    "HorizonSpec",
    "Key",
    "LeadFit",
    "PathPoint",
    "bucket_means",
    "build_path",
    "daemon_forecaster",
    "dump_models",
    "fit_leads",
    "forecast_point",
    "grid_step",
    "grid_times",
    "horizon_specs",
    "load_models",
    "sample_step",
]

STEP_CHOICES = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
MIN_STEPS_PER_HORIZON = 12
MAX_SAMPLES_PER_STEP = 10
BASE_QUANTILES = (0.1, 0.5, 0.9)
OBSERVED, INTERPOLATED = "observed", "interpolated"
# The types a stored horizon model may contain (skops refuses anything else).
_TRUSTED = (
    "empire.models.forecast.DemandForecaster",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

Key = tuple[str, str]  # (target, signal)


def daemon_forecaster() -> DemandForecaster:
    """The daemon's horizon model: `DemandForecaster` with 100 boosting rounds at rate 0.15 instead of
    300 at 0.05. On NASA-HTTP per-minute demand averaged per 5 minutes, 1 h ahead (walk-forward,
    80/20, refitted daily) it scores MAE 7.45 requests/min against 7.38 with the defaults, 10.74 for
    the last value and 11.75 for the seasonal fallback, in 52 s instead of 139 s (13 refits; about
    2.4 s per fit on 14 days), and serialises to ~0.9 MB instead of ~3 MB."""
    return DemandForecaster(max_iter=100, learning_rate=0.15)


# -- what to forecast (pure) ----------------------------------------------------------------------------


def grid_step(horizons: Iterable[float]) -> float:
    """The resampling step for these horizons (seconds): the largest of `STEP_CHOICES` that is at most
    a twelfth of the shortest one, and at least one minute."""
    shortest = min(horizons)
    fits = [c for c in STEP_CHOICES if c <= shortest / MIN_STEPS_PER_HORIZON + 1e-9]
    return fits[-1] if fits else STEP_CHOICES[0]


def sample_step(step: float, interval: float) -> float:
    """How finely to sample within a step: up to 10 samples, never finer than the loop's interval."""
    k = max(1, min(MAX_SAMPLES_PER_STEP, int(step // max(interval, 1e-9))))
    return step / k


@dataclass(frozen=True)
class HorizonSpec:
    """One key's forecasting job, derived from the policy."""

    target: str
    signal: str
    query: str
    asked: tuple[tuple[float, str], ...]  # (horizon seconds, who: "predictive" | "rule:<name>")
    step: float
    leads: tuple[int, ...]  # distinct horizons in whole steps, increasing
    quantiles: tuple[float, ...]
    quantile: float  # the target's `predictive.quantile`: what rules and decisions read
    history: float  # seconds of history fetched to fit
    refit_every: float

    @property
    def name(self) -> str:
        return f"horizon:{self.target}/{self.signal}"

    @property
    def config(self) -> dict[str, Any]:
        """What a stored model must match to be reused."""
        return {"step_seconds": self.step, "lead_seconds": [lead * self.step for lead in self.leads],
                "quantiles": list(self.quantiles)}  # fmt: skip

    def notes(self) -> list[str]:
        """Horizons that are not a whole number of steps (their point is the last whole step before)."""
        out = []
        for seconds, who in self.asked:
            used = max(1, int(seconds // self.step + 1e-9)) * self.step
            if not math.isclose(used, seconds):
                out.append(f"{who} asks {format_duration(timedelta(seconds=seconds))}; its forecast point is at "
                           f"{format_duration(timedelta(seconds=used))} (whole {self.step / 60:g}-minute steps)")  # fmt: skip
        return out


def horizon_specs(policy: Policy) -> dict[Key, HorizonSpec]:
    """Which (target, signal) pairs get a horizon forecast, at which horizons. PURE."""
    asked: dict[Key, list[tuple[float, str]]] = {}
    targets = {t.name: t for t in policy.targets}
    for t in policy.targets:
        signal = t.demand_signal()
        if t.predictive.mode != PredictiveMode.off and signal is not None:
            asked.setdefault((t.name, signal.name), []).append((t.predictive.horizon.total_seconds(), "predictive"))
    for rule in policy.alerting.rules:
        if rule.kind == RuleKind.predicted_breach and rule.target in targets:
            asked.setdefault((rule.target, rule.signal), []).append((rule.horizon.total_seconds(), f"rule:{rule.name}"))
    out = {}
    for (name, signal_name), items in asked.items():
        target = targets[name]
        signal = next((s for s in target.signals if s.name == signal_name), None)
        if signal is None:
            continue
        step = grid_step(h for h, _ in items)
        leads = tuple(sorted({max(1, int(h // step + 1e-9)) for h, _ in items}))
        q = target.predictive.quantile
        out[(name, signal_name)] = HorizonSpec(
            name, signal_name, signal.query, tuple(sorted(items)), step, leads,
            tuple(sorted({*BASE_QUANTILES, q})), q, target.predictive.history.total_seconds(),
            target.predictive.refit_every.total_seconds(),
        )  # fmt: skip
    return out


# -- series and path (pure) -----------------------------------------------------------------------------


def bucket_means(points: Iterable[tuple[float, float]], end: float, step: float, n: int, per_step: int) -> np.ndarray:
    """Mean of the samples (epoch seconds, value) in each of the `n` steps ending at `end`.

    Step `i` covers `(end - (n - i) * step, end - (n - 1 - i) * step]`; it is NaN when fewer than half
    of its `per_step` expected samples are there (a partly missing step is a gap, not a low value)."""
    total, count = np.zeros(n), np.zeros(n)
    for at, value in points:
        if not math.isfinite(value):
            continue
        back = math.floor(round((end - at) / step, 6))
        i = n - 1 - back
        if 0 <= i < n and at <= end:
            total[i] += value
            count[i] += 1
    need = max(1, math.ceil(per_step / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= need, total / np.maximum(count, 1), np.nan)


def grid_times(end: float, step: float, n: int) -> np.ndarray:
    """datetime64[s] stamps of the `n` steps ending at `end` (each step is stamped with its end)."""
    return (np.round(end - step * np.arange(n - 1, -1, -1)).astype(np.int64)).astype("datetime64[s]")


@dataclass(frozen=True)
class PathPoint:
    """The forecast `seconds` after the path's origin: quantile -> value, and what produced it."""

    seconds: float
    quantiles: Mapping[float, float]
    method: str  # gbm | seasonal_change | last_value (forecasts) | interpolated | observed
    reason: str = ""

    def value(self, q: float) -> float | None:
        for level, v in self.quantiles.items():
            if math.isclose(level, q):
                return v
        return None


def build_path(observed: float | None, anchors: Sequence[PathPoint], step: float) -> tuple[PathPoint, ...]:
    """The path from the last observed step (seconds 0) through the forecast `anchors`, with one
    straight-line point per `step` between consecutive points (only the quantiles both ends have)."""
    points: list[PathPoint] = []
    prev: PathPoint | None = None
    if observed is not None and math.isfinite(observed):
        prev = PathPoint(0.0, {q: observed for q in (anchors[0].quantiles if anchors else {})}, OBSERVED)
        points.append(prev)
    for a in sorted(anchors, key=lambda p: p.seconds):
        if prev is not None:
            n = round((a.seconds - prev.seconds) / step)
            common = [q for q in a.quantiles if prev.value(q) is not None]
            for k in range(1, n):
                frac = k / n
                qs = {q: (1 - frac) * (prev.value(q) or 0.0) + frac * a.quantiles[q] for q in common}
                points.append(PathPoint(prev.seconds + k * step, qs, INTERPOLATED))
        points.append(a)
        prev = a
    return tuple(points)


@dataclass(frozen=True)
class HorizonPath:
    """A key's forecast path from `origin` (the end of the last complete step)."""

    target: str
    signal: str
    origin: datetime
    step: float
    points: tuple[PathPoint, ...]
    quantile: float

    def anchors(self) -> list[PathPoint]:
        return [p for p in self.points if p.method not in (OBSERVED, INTERPOLATED)]

    def forecasts(self, now: datetime, quantile: float | None = None) -> list[Forecast]:
        """The path as `Forecast`s at `quantile` (default the policy's), horizons counted from `now`."""
        q = self.quantile if quantile is None else quantile
        lag = (now - self.origin).total_seconds()
        out = []
        for p in self.points:
            v = p.value(q)
            if p.method != OBSERVED and v is not None and p.seconds - lag >= 0:
                out.append(Forecast(self.signal, v, q, p.seconds - lag, p.method))
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "origin": self.origin.isoformat(), "step": format_duration(timedelta(seconds=self.step)),
            "points": [{"in": format_duration(timedelta(seconds=p.seconds)), "method": p.method,
                        **{quantile_name(q): round(v, 4) for q, v in p.quantiles.items()}} for p in self.points],
        }  # fmt: skip


# -- fitting (pure, runs in a worker thread) ---------------------------------------------------------------


@dataclass
class LeadFit:
    """One horizon's model (None: the seasonal fallback is used) and its holdout errors."""

    lead: int  # steps
    model: DemandForecaster | None
    validation_mae: float | None
    fallback_mae: float | None
    reason: str

    @property
    def method(self) -> str:
        return MODEL if self.model is not None else "fallback"


def fit_leads(y: np.ndarray, ts: np.ndarray, step: float, leads: Sequence[int], quantiles: Sequence[float],
              template: DemandForecaster) -> list[LeadFit]:  # fmt: skip
    """Fit one clone of `template` per lead and guard it against its seasonal fallback on its holdout."""
    out = []
    for lead in leads:
        est = clone(template).set_params(horizon=lead * step, quantiles=tuple(quantiles))
        try:
            est.fit(y, ts)
        except InsufficientHistory as exc:
            out.append(LeadFit(lead, None, None, None, f"fallback: {exc}"))
            continue
        mae, fb = float(est.validation_mae_), float(est.fallback_validation_mae_)
        if mae > fb:  # the rule of forecast_demand(guard=True)
            out.append(LeadFit(lead, None, mae, fb, f"fallback: model holdout MAE {mae:.4g} is worse than the "
                                                    f"fallback's {fb:.4g}"))  # fmt: skip
        else:
            out.append(LeadFit(lead, est, mae, fb, f"model: holdout MAE {mae:.4g} vs fallback {fb:.4g}"))
    return out


def forecast_point(fit: LeadFit, y: np.ndarray, ts: np.ndarray, step: float, quantiles: Sequence[float]) -> PathPoint:
    """The forecast `fit.lead` steps after the series' end (raises InsufficientHistory when even the
    fallback has nothing to start from)."""
    if fit.model is not None:
        f = fit.model.forecast(y, ts)
    else:
        f = fallback_forecast(y, ts, horizon=fit.lead * step, quantiles=tuple(quantiles), reason=fit.reason)
    return PathPoint(fit.lead * step, dict(f.quantiles), f.method, f.reason)


def dump_models(models: list[DemandForecaster | None]) -> bytes:
    import zipfile

    import skops.io as sio

    return bytes(sio.dumps(models, compression=zipfile.ZIP_DEFLATED))


def load_models(blob: bytes) -> list[DemandForecaster | None]:
    """Load what `dump_models` wrote, refusing any type outside the allow-list."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=blob)
    unknown = sorted(set(untrusted) - set(_TRUSTED))
    if unknown:
        raise ValueError(f"stored horizon model holds types outside the allow-list: {', '.join(unknown)}")
    models = sio.loads(blob, trusted=untrusted)
    if not isinstance(models, list) or not all(m is None or isinstance(m, DemandForecaster) for m in models):
        raise ValueError("stored horizon model is not a list of DemandForecaster")
    return models
