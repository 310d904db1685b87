"""Predictive scaling: the forecaster service behind `ControlLoop.forecaster` (issue 5).

Why a short-horizon quantile model of its own: a replica asked for now is ready `scheduling_buffer`
later, so what scaling needs is *the demand `scheduling_buffer` from now, at a high quantile*, fresh
every tick. Hourly models (`empire.models.forecast`) answer a different question (the next hour's
total); per-minute demand is dominated by bursty noise (NASA-HTTP: variance about 6x the mean), so
at a few minutes' horizon the recent level carries nearly all the signal and the quantile is what
matters. `LevelQuantileModel` is that model, with the scikit-learn contract (hyperparameters in
`__init__`, `fit` returns self, learned state ends in `_`):

    forecast(t + h) at quantile q = (sqrt(level_t) + Q_q(residuals))^2

where the level is the mean of a window of past steps (`season=0`), or of the same window one
season earlier (the seasonal-naive fallback), and the residuals are out-of-sample
`sqrt(y[t+h]) - sqrt(level_t)` on the history: the square root stabilises count noise (Poisson
variance grows with the mean), so one residual distribution serves night and peak.

`ForecastService` (one per daemon or backtest run):

* `await service(target, now)` returns the `Forecast` for a target whose `predictive.mode` is not
  `off`, from the last few points of history (`Observer.history`: Prometheus `query_range`, or the
  replayed trace), or None while no model is fitted (the loop is then purely reactive);
* `refit_due(now)` is a periodic job: every `refit_every` (sooner while the history is young: as soon
  as it has doubled since the last fit) it fetches `predictive.history`, fits the
  candidate (recent level) and the seasonal-naive fallback on all but the last `validation` span,
  compares their pinball loss at the policy's quantile on that recent span, and **never uses a model
  worse than the seasonal-naive fallback** (plain naive when the history is shorter than a season).
  Both go to the model registry (`StateStore.save_model`) with their validation errors; the one in
  use has `in_use=True` and is restored from the registry at start.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from empire.agent.loop import jsonable
from empire.agent.types import Forecast
from empire.policies.scaling import PredictiveMode, SignalType, Target
from empire.state.records import ModelRecord

if TYPE_CHECKING:
    from empire.agent.daemon import Daemon
    from empire.agent.monitor import Monitor
    from empire.agent.ports import Observer, StateStore
    from empire.policies.loading import LoadedPolicy

__all__ = [
    "CANDIDATE",
    "NAIVE",
    "SEASONAL_NAIVE",
    "ForecastService",
    "LevelQuantileModel",
    "ModelChoice",
    "PredictiveMetrics",
    "choose_model",
    "pinball_loss",
    "setup",
]

logger = logging.getLogger(__name__)

CANDIDATE, SEASONAL_NAIVE, NAIVE = "recent_level", "seasonal_naive", "naive"
MODEL_KINDS = (CANDIDATE, SEASONAL_NAIVE, NAIVE)
_CHUNK = 10_000  # steps per history query
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


class PredictiveMetrics:
    """`Monitor.predictive`: what the forecaster predicts and which model it trusts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.demand = Gauge("empire_forecast_demand", "Forecast demand (policy quantile) at the scheduling buffer",
                            ["target"], registry=registry)  # fmt: skip
        self.replicas = Gauge("empire_forecast_replicas", "Replicas the forecast asks for (acted on or not)",
                              ["target"], registry=registry)  # fmt: skip
        self.refits = Counter("empire_forecast_refits", "Model refits by result", ["target", "result"],
                              registry=registry)  # fmt: skip
        self.validation = Gauge("empire_forecast_validation_loss", "Pinball loss on the recent validation span",
                                ["target", "model"], registry=registry)  # fmt: skip
        self.in_use = Gauge("empire_forecast_model_in_use", "1 for the model in use", ["target", "model"],
                            registry=registry)  # fmt: skip


@dataclass
class _State:
    model: LevelQuantileModel | None = None
    fitted_at: datetime | None = None
    attempted_at: datetime | None = None
    restored: bool = False
    reason: str = "not fitted yet"
    trained_on: timedelta | None = None  # the span of history the model in use was fitted on
    metrics: dict[str, Any] = field(default_factory=dict)


def _history_query(observer: Any, target: Target, signal: str, query: str) -> str:
    from empire.agent.observers.replay import ReplayObserver

    return f"{target.name}/{signal}" if isinstance(observer, ReplayObserver) else query


def _grid(points: list[tuple[datetime, float]], end: datetime, step: float, n: int) -> np.ndarray:
    """Place (time, value) points on the n-step grid ending at `end` (NaN where nothing fell)."""
    y = np.full(n, np.nan)
    last = end.timestamp()
    for at, value in points:
        i = n - 1 - round((last - at.timestamp()) / step)
        if 0 <= i < n:
            y[i] = value
    return y


class ForecastService:
    """The `ControlLoop.forecaster` callable plus its refit job (see the module docstring)."""

    def __init__(
        self,
        observer: Observer,
        store: StateStore,
        policy: Callable[[], LoadedPolicy],
        *,
        monitor: Monitor | None = None,
        step: float | None = None,
        level_window: timedelta = timedelta(minutes=10),
        season: timedelta = timedelta(days=1),
        validation: timedelta = timedelta(days=1),
        min_history: timedelta = timedelta(minutes=30),
        retry_after: timedelta = timedelta(minutes=30),
    ) -> None:
        from empire.agent.monitor import Monitor

        self.observer, self.store, self.policy = observer, store, policy
        self.monitor = monitor or Monitor()
        self.fixed_step = step
        self.level_window, self.season, self.validation = level_window, season, validation
        self.min_history, self.retry_after = min_history, retry_after
        self.states: dict[str, _State] = {}

    # -- per tick ---------------------------------------------------------------------------------
    def step(self) -> float:
        return self.fixed_step or max(1.0, self.policy().policy.loop.interval.total_seconds())

    def horizon_steps(self, target: Target) -> int:
        return max(1, math.ceil(target.predictive.scheduling_buffer.total_seconds() / self.step() - 1e-9))

    async def __call__(self, target: Target, now: datetime) -> Forecast | None:
        signal = target.demand_signal()
        if target.predictive.mode == PredictiveMode.off or signal is None:
            return None
        state = self.states.get(target.name)
        if state is None:
            state = self.states[target.name] = _State()
            await self._restore(target, state)
        model = state.model
        if model is None or model.horizon != self.horizon_steps(target):
            return None
        step = self.step()
        first, last = model.window_back()  # only the steps the level is the mean of
        query = _history_query(self.observer, target, signal.name, signal.query)
        start, end = now - timedelta(seconds=step * first), now - timedelta(seconds=step * last)
        values = [v for _, v in await self.observer.history(query, start, end, step) if math.isfinite(v)]
        if not values:
            return None
        value = model.from_level(sum(values) / len(values), target.predictive.quantile)
        metrics = self.monitor.predictive
        metrics.demand.labels(target.name).set(value)
        per_replica = target.predictive.target or signal.target
        if signal.type == SignalType.total:
            metrics.replicas.labels(target.name).set(math.ceil(value / per_replica - 1e-9))
        return Forecast(signal.name, value, target.predictive.quantile, model.horizon * step, model.kind)

    # -- refits -----------------------------------------------------------------------------------
    async def refit_due(self, now: datetime) -> None:
        """The periodic job: refit every predictive target whose model is due (errors are per target)."""
        for target in self.policy().policy.targets:
            if target.predictive.mode == PredictiveMode.off or target.demand_signal() is None:
                continue
            state = self.states.setdefault(target.name, _State())
            if not state.restored:
                await self._restore(target, state)
            age = now - state.fitted_at if state.fitted_at is not None else None
            young = state.trained_on is not None and state.trained_on < target.predictive.history
            due = (
                state.model is None or age is None or age >= target.predictive.refit_every
                or (young and state.trained_on is not None and age >= state.trained_on)  # history doubled since
                or state.model.horizon != self.horizon_steps(target)
            )  # fmt: skip
            if not due or (state.model is None and state.attempted_at and now - state.attempted_at < self.retry_after):
                continue
            try:
                await self.refit(target, now)
            except Exception as exc:
                state.attempted_at = now
                state.reason = f"refit failed: {exc}"
                self.monitor.predictive.refits.labels(target.name, "error").inc()
                logger.warning("%s: forecast model refit failed: %s", target.name, exc)

    async def refit(self, target: Target, now: datetime) -> LevelQuantileModel | None:
        """Fetch history, fit candidate and fallback, validate on the recent span, register, choose."""
        state = self.states.setdefault(target.name, _State())
        state.attempted_at = now
        signal = target.demand_signal()
        assert signal is not None
        step, h, q = self.step(), self.horizon_steps(target), target.predictive.quantile
        n = max(1, int(target.predictive.history.total_seconds() // step))
        query = _history_query(self.observer, target, signal.name, signal.query)
        points: list[tuple[datetime, float]] = []
        for first in range(n - 1, -1, -_CHUNK):  # Prometheus answers at most 11,000 points per series
            last = max(first - _CHUNK + 1, 0)
            chunk_start, chunk_end = now - timedelta(seconds=step * first), now - timedelta(seconds=step * last)
            points.extend(await self.observer.history(query, chunk_start, chunk_end, step))
        y = _grid(points, now, step, n)
        valid = int(np.isfinite(y).sum())
        first = int(np.argmax(np.isfinite(y))) if valid else n
        y = y[first:]
        metrics = self.monitor.predictive
        if valid * step < self.min_history.total_seconds():
            state.reason = (f"history too short: {valid} valid steps of {step:g}s, need "
                            f"{self.min_history.total_seconds() / step:.0f}; scaling stays reactive")  # fmt: skip
            metrics.refits.labels(target.name, "short_history").inc()
            logger.info("%s: no forecast model: %s", target.name, state.reason)
            return None
        season = round(self.season.total_seconds() / step)
        val = min(round(self.validation.total_seconds() / step), len(y) // 4)
        window = max(1, round(self.level_window.total_seconds() / step))
        choice = choose_model(y, horizon=h, window=window, season=season, quantile=q, validation=val)
        chosen, other, losses = choice.chosen, choice.other, choice.losses
        for kind, loss in losses.items():
            metrics.validation.labels(target.name, kind).set(loss)
        common = {"validation_steps": val, "train_steps": len(y) - val, "step_seconds": step, "quantile": q,
                  "losses": losses, "baseline": choice.baseline}  # fmt: skip
        reason = choice.reason
        use_candidate = chosen.kind == CANDIDATE
        name = f"demand/{target.name}"
        await self.store.save_model(
            ModelRecord(name, other.kind, other.params(), jsonable({**common, "used": False}), now, None, in_use=False)
        )
        await self.store.save_model(ModelRecord(name, chosen.kind, chosen.to_record(),
                                                jsonable({**common, "used": True, "reason": reason}), now, None,
                                                in_use=True))  # fmt: skip
        for kind in MODEL_KINDS:
            metrics.in_use.labels(target.name, kind).set(1 if kind == chosen.kind else 0)
        metrics.refits.labels(target.name, "candidate" if use_candidate else "fallback").inc()
        state.model, state.fitted_at, state.reason, state.metrics = chosen, now, reason, common
        state.trained_on = timedelta(seconds=len(y) * step)
        logger.info("%s: forecast model refitted: %s", target.name, reason)
        return chosen

    async def _restore(self, target: Target, state: _State) -> None:
        """Reuse the model in use from the registry (a restart does not wait for a refit)."""
        state.restored = True
        try:
            rec = await self.store.latest_model(f"demand/{target.name}")
            if rec is not None and rec.params.get("residual_quantiles"):
                state.model = LevelQuantileModel.from_record(rec.params)
                state.fitted_at, state.reason = rec.created_at, f"restored from the model registry ({rec.kind})"
        except Exception as exc:
            logger.warning("%s: could not restore the forecast model: %s", target.name, exc)

    def status(self) -> dict[str, Any]:
        return {
            name: {"model": s.model.kind if s.model else None,
                   "fitted_at": s.fitted_at.isoformat() if s.fitted_at else None, "reason": s.reason}
            for name, s in self.states.items()
        }  # fmt: skip


def setup(daemon: Daemon) -> None:
    """Daemon area hook: forecasts for the loop, a refit job, a `/status` section."""
    service = ForecastService(daemon.observer, daemon.store, daemon.policy, monitor=daemon.monitor)
    daemon.loop.forecaster = service
    daemon.jobs.add("predictive-refit", timedelta(minutes=5), service.refit_due)
    daemon.context.status_sections["predictive"] = service.status
    modes = {t.name: t.predictive.mode.value for t in daemon.policy().policy.targets}
    logger.info("predictive scaling: %s", ", ".join(f"{k} {v}" for k, v in modes.items()) or "no targets")
