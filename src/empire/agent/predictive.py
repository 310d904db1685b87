"""Predictive scaling: the forecaster service behind `ControlLoop.forecaster` (issue 5), and the area hook.

Two forecasts, two questions, one policy block (`predictive`):

* **`scheduling_buffer` ahead, for scaling.** A replica asked for now is ready `scheduling_buffer`
  later, so scaling needs the demand that far ahead at the policy's quantile, fresh every tick.
  `ForecastService` serves it with the short-horizon `LevelQuantileModel`
  (`empire.models.shortterm`: recent level plus out-of-sample quantiles of the residuals); the
  backtest's figures come from this path alone.
* **`horizon` ahead, for people and alert rules.** `empire.agent.horizon.HorizonForecasts` fits the
  gradient-boosted `DemandForecaster` on the same signal resampled to a step derived from the
  horizon (5 minutes for 1 h) and serves a forecast *path* up to `predictive.horizon` (and up to
  each predicted_breach rule's horizon): metrics, `/status`, the decision's details, and the input
  of `predicted_breach` rules. Scaling never acts on it.

`ForecastService` (one per daemon or backtest run):

* `await service(target, now)` returns the `Forecast` for a target whose `predictive.mode` is not
  `off`, from the last few points of history (`Observer.history`: Prometheus `query_range`, or the
  replayed trace), or None while no model is fitted (the loop is then purely reactive). With a
  `HorizonForecasts` attached (the daemon), the forecast also carries the horizon forecast
  (`details["horizon"]`), which `decide()` records in the decision: in `forecast_only` mode the
  decision then shows what both forecasts would have asked for;
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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from empire.agent.areas import AreaDeps, AreaHandle, AreaPlugin, PeriodicJob
from empire.agent.deciding import total_replicas
from empire.agent.guard import GuardSettings, GuardVerdict, PredictiveGuard
from empire.agent.horizon.metrics import HorizonMetrics
from empire.agent.horizon.path import HorizonPath
from empire.agent.horizon.service import HorizonForecasts, history_query
from empire.agent.recent import RecentSeries
from empire.agent.records import ModelRecord, jsonable
from empire.agent.types import Forecast, ForecastGate
from empire.models.forecast import quantile_name
from empire.models.shortterm import CANDIDATE, MODEL_KINDS, LevelQuantileModel, choose_model
from empire.policies.durations import format_duration
from empire.policies.scaling import PredictiveMode, Signal, SignalType, Target

if TYPE_CHECKING:
    from empire.agent.monitor import Monitor
    from empire.agent.ports import Observer, StateStore
    from empire.policies.loading import LoadedPolicy

__all__ = ["AREA", "ForecastService", "PredictiveMetrics", "build", "horizon_details"]

logger = logging.getLogger(__name__)
_CHUNK = 10_000  # steps per history query


class PredictiveMetrics:
    """`monitor.group(PredictiveMetrics)`: what the forecaster predicts and which model it trusts."""

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
        self.gate = Gauge("empire_forecast_gate", "1 for the predictive guard's state: trusted (the forecast acts), "
                          "unproven or skill_lost (reactive scaling acts)", ["target", "state"], registry=registry)  # fmt: skip
        self.skill = Gauge("empire_forecast_skill", "1 - pinball loss of the forecast / that of seasonal naive, recent "
                           "forecasts (above 0: better than seasonal naive)", ["target"], registry=registry)  # fmt: skip
        self.exceedance = Gauge("empire_forecast_exceedance_ratio", "Share of the recent forecasts that actual demand "
                                "exceeded, at the quantile in use", ["target"], registry=registry)  # fmt: skip
        self.quantile_used = Gauge("empire_forecast_quantile_used", "Forecast quantile the scaling acts on",
                                   ["target"], registry=registry)  # fmt: skip
        self.shadow_under = Gauge("empire_forecast_shadow_underprovisioned_ratio", "Share of ticks under-provisioned "
                                  "over the evaluation window: reactive scaling vs the chosen variant (counterfactual)",
                                  ["target", "policy"], registry=registry)  # fmt: skip
        self.shadow_cost = Gauge("empire_forecast_shadow_replica_hours", "Replica-hours over the evaluation window: "
                                 "reactive scaling vs the chosen variant (counterfactual)", ["target", "policy"],
                                 registry=registry)  # fmt: skip


@dataclass
class _State:
    model: LevelQuantileModel | None = None
    baseline: LevelQuantileModel | None = None  # seasonal naive (or naive): the yardstick of the skill measure
    guard: PredictiveGuard | None = None
    verdict: GuardVerdict | None = None
    recent: RecentSeries | None = None
    fitted_at: datetime | None = None
    attempted_at: datetime | None = None
    restored: bool = False
    reason: str = "not fitted yet"
    trained_on: timedelta | None = None  # the span of history the model in use was fitted on
    metrics: dict[str, Any] = field(default_factory=dict)


def _grid(points: list[tuple[datetime, float]], end: datetime, step: float, n: int) -> np.ndarray:
    """Place (time, value) points on the n-step grid ending at `end` (NaN where nothing fell)."""
    y = np.full(n, np.nan)
    last = end.timestamp()
    for at, value in points:
        i = n - 1 - round((last - at.timestamp()) / step)
        if 0 <= i < n:
            y[i] = value
    return y


def horizon_details(
    target: Target, signal: Signal, path: HorizonPath, now: datetime, short_term: float
) -> dict[str, Any] | None:
    """The horizon forecast as a decision records it: the point at `predictive.horizon` (quantiles,
    which method made it) and, for a `total` signal, the replicas it would ask for at the policy's
    quantile (`would_scale_to`: within min/max replicas). Scaling does not act on it. PURE."""
    want = target.predictive.horizon.total_seconds()
    anchors = [p for p in path.anchors() if p.seconds <= want + 1e-9] or path.anchors()
    if not anchors:
        return None
    point = anchors[-1]
    q = target.predictive.quantile
    value = point.value(q)
    lag = (now - path.origin).total_seconds()
    out: dict[str, Any] = {
        "horizon": format_duration(timedelta(seconds=point.seconds)), "in_seconds": point.seconds - lag,
        "at": (path.origin + timedelta(seconds=point.seconds)).isoformat(), "method": point.method,
        "quantiles": {quantile_name(k): v for k, v in point.quantiles.items()}, "value": value,
        "short_term_value": short_term,
    }  # fmt: skip
    if value is not None and signal.type == SignalType.total:
        need = total_replicas(target, signal, value)
        out["replicas"] = need
        out["would_scale_to"] = max(target.min_replicas, min(need, target.max_replicas))
    return out


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
        level_windows: tuple[timedelta, ...] = (
            timedelta(0),
            timedelta(minutes=3),
            timedelta(minutes=10),
            timedelta(minutes=30),
        ),
        season: timedelta = timedelta(days=1),
        validation: timedelta = timedelta(days=1),
        min_history: timedelta = timedelta(minutes=30),
        retry_after: timedelta = timedelta(minutes=30),
        horizon: HorizonForecasts | None = None,
    ) -> None:
        from empire.agent.monitor import Monitor

        self.observer, self.store, self.policy = observer, store, policy
        self.monitor = monitor or Monitor()
        self.fixed_step = step
        self.level_windows, self.season, self.validation = level_windows, season, validation
        self.min_history, self.retry_after = min_history, retry_after
        self.states: dict[str, _State] = {}
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._shown: dict[str, tuple[Any, ...]] = {}  # what the guard's gauges last showed, per target
        self.horizon = horizon  # the daemon attaches one; the backtest does not

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
            await self._restore(target, state, now)
        model = state.model
        if model is None or model.horizon != self.horizon_steps(target):
            return None
        step = self.step()
        recent = await self._recent(target, signal, state, now)
        first, last = model.window_back()  # the steps the level is the mean of
        window = [v for v in recent.back(first, last) if math.isfinite(v)]
        if not window:
            return None
        level = sum(window) / len(window)
        vol = model.recent_volatility(recent.back(model.recent_steps() - 1))
        guard = self._guard(target, signal, state)
        quantiles = sorted({target.predictive.quantile, *guard.quantiles})
        values = model.forecasts(level, quantiles, vol)
        demand = recent.latest()
        if math.isfinite(demand) and recent.end is not None:
            at = datetime.fromtimestamp(recent.end * recent.step, UTC)
            guard.observe(at, demand, values, self._naive(target, state, recent))
        verdict = state.verdict = guard.verdict()
        q = verdict.variant.quantile if verdict.trusted and verdict.variant else target.predictive.quantile
        value = values[q]
        metrics = self.monitor.group(PredictiveMetrics)
        self._gauge(metrics.demand, target.name).set(value)
        if signal.type == SignalType.total:
            self._gauge(metrics.replicas, target.name).set(total_replicas(target, signal, value))
        self._gate_metrics(target.name, verdict, guard)
        details: dict[str, Any] = {"guard": verdict.summary()}
        if self.horizon is not None:
            try:
                path = await self.horizon.path(target.name, signal.name, now)
                info = horizon_details(target, signal, path, now, value) if path is not None else None
            except Exception as exc:  # the horizon forecast is informational: never fail the scaling one
                logger.warning("%s: horizon forecast unavailable: %s", target.name, exc)
                info = None
            if info is not None:
                details["horizon"] = info
        window_s = verdict.variant.window if verdict.trusted and verdict.variant else None
        return Forecast(signal.name, value, q, model.horizon * step, model.kind, details,
                        gate=ForecastGate(verdict.state), scale_down_window=window_s)  # fmt: skip

    async def _recent(self, target: Target, signal: Signal, state: _State, now: datetime) -> RecentSeries:
        """The target's recent demand, long enough for both models' windows, up to `now`."""
        step = self.step()
        need = max(m.window_back()[0] + 1 if m.season else max(m.window, m.recent_steps())
                   for m in (state.model, state.baseline) if m is not None)  # fmt: skip
        need = max(need, state.model.recent_steps() if state.model else 1)
        if state.recent is None or state.recent.step != step or state.recent.size < need:
            state.recent = RecentSeries(step, need)
        query = history_query(self.observer, target.name, signal.name, signal.query)

        async def fetch(start: datetime, end: datetime) -> list[tuple[datetime, float]]:
            return await self.observer.history(query, start, end, step)

        await state.recent.update(fetch, now)
        return state.recent

    def _naive(self, target: Target, state: _State, recent: RecentSeries) -> float | None:
        """The seasonal-naive (or naive) forecast at the policy's quantile: the skill measure's yardstick."""
        base = state.baseline
        if base is None or base.horizon != self.horizon_steps(target):
            return None
        first, last = base.window_back()
        level = [v for v in recent.back(first, last) if math.isfinite(v)]
        if not level:
            return None
        vol = base.recent_volatility(recent.back(base.recent_steps() - 1))
        return base.from_level(sum(level) / len(level), target.predictive.quantile, vol)

    def guard_settings(self, target: Target, signal: Signal) -> GuardSettings:
        p = target.predictive
        return GuardSettings(
            step=self.step(), target=signal.target, capacity=p.target or signal.target, tolerance=target.tolerance,
            policy_window=target.behavior.scale_down.stabilization_window.total_seconds(),
            buffer=p.scheduling_buffer.total_seconds(), quantile=p.quantile, min_replicas=max(1, target.min_replicas),
            max_replicas=target.max_replicas, evaluation_window=p.evaluation_window.total_seconds(),
            min_evaluation=p.min_evaluation.total_seconds(),
            scale_up=tuple((r.type.value, float(r.value)) for r in target.behavior.scale_up.policies),
            up_select=target.behavior.scale_up.select.value,
        )  # fmt: skip

    def _guard(self, target: Target, signal: Signal, state: _State) -> PredictiveGuard:
        """The target's guard, rebuilt (evidence kept where it still applies) when the policy changed it."""
        settings = self.guard_settings(target, signal)
        if state.guard is None or state.guard.s != settings:
            old = state.guard
            state.guard = PredictiveGuard(settings, settings.min_replicas)
            if old is not None and old.last_at is not None:
                state.guard.restore(old.state(), datetime.fromtimestamp(old.last_at, UTC))
        return state.guard

    def _gauge(self, metric: Gauge, *labels: str) -> Gauge:
        """A labelled child, looked up once (every predictive target sets a dozen of them every tick)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _gate_metrics(self, name: str, verdict: GuardVerdict, guard: PredictiveGuard) -> None:
        """The guard's gauges, set when what they show can have changed: the gate's state, or an hour's
        bucket of the books (the skill and exceedance gauges move with them)."""
        key = (
            verdict.state,
            verdict.variant,
            len(guard.bank.books),
            guard.bank.books[-1][0] if guard.bank.books else 0,
        )
        if self._shown.get(name) == key:
            return
        self._shown[name] = key
        m, g = self.monitor.group(PredictiveMetrics), self._gauge
        for gate in ForecastGate:
            g(m.gate, name, gate.value).set(1 if gate.value == verdict.state else 0)
        skill = guard.skill()
        if skill is not None:
            g(m.skill, name).set(skill)
        used = verdict.variant.quantile if verdict.variant else guard.s.quantile
        misses, n = guard.exceedance(used)
        if n:
            g(m.exceedance, name).set(misses / n)
        g(m.quantile_used, name).set(used)
        for policy, variant in (("reactive", None), ("chosen", verdict.variant)):
            if policy == "reactive" or variant is not None:
                under, ticks, cost = guard.totals(variant)
                g(m.shadow_under, name, policy).set(under / ticks if ticks else 0)
                g(m.shadow_cost, name, policy).set(cost / 3600)

    # -- refits -----------------------------------------------------------------------------------
    async def refit_due(self, now: datetime) -> None:
        """The periodic job: refit every predictive target whose model is due (errors are per target)."""
        for target in self.policy().policy.targets:
            if target.predictive.mode == PredictiveMode.off or target.demand_signal() is None:
                continue
            state = self.states.setdefault(target.name, _State())
            if not state.restored:
                await self._restore(target, state, now)
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
                self.monitor.group(PredictiveMetrics).refits.labels(target.name, "error").inc()
                logger.warning("%s: forecast model refit failed: %s", target.name, exc)

    async def refit(self, target: Target, now: datetime) -> LevelQuantileModel | None:
        """Fetch history, fit candidate and fallback, validate on the recent span, register, choose."""
        state = self.states.setdefault(target.name, _State())
        state.attempted_at = now
        signal = target.demand_signal()
        assert signal is not None
        step, h, q = self.step(), self.horizon_steps(target), target.predictive.quantile
        n = max(1, int(target.predictive.history.total_seconds() // step))
        query = history_query(self.observer, target.name, signal.name, signal.query)
        points: list[tuple[datetime, float]] = []
        for first in range(n - 1, -1, -_CHUNK):  # Prometheus answers at most 11,000 points per series
            last = max(first - _CHUNK + 1, 0)
            chunk_start, chunk_end = now - timedelta(seconds=step * first), now - timedelta(seconds=step * last)
            points.extend(await self.observer.history(query, chunk_start, chunk_end, step))
        y = _grid(points, now, step, n)
        valid = int(np.isfinite(y).sum())
        first = int(np.argmax(np.isfinite(y))) if valid else n
        y = y[first:]
        metrics = self.monitor.group(PredictiveMetrics)
        if valid * step < self.min_history.total_seconds():
            state.reason = (f"history too short: {valid} valid steps of {step:g}s, need "
                            f"{self.min_history.total_seconds() / step:.0f}; scaling stays reactive")  # fmt: skip
            metrics.refits.labels(target.name, "short_history").inc()
            logger.info("%s: no forecast model: %s", target.name, state.reason)
            return None
        season = round(self.season.total_seconds() / step)
        val = min(round(self.validation.total_seconds() / step), len(y) // 4)
        windows = tuple(sorted({max(1, round(w.total_seconds() / step)) for w in self.level_windows}))
        choice = choose_model(y, horizon=h, window=windows, season=season, quantile=q, validation=val)
        chosen, other, losses = choice.chosen, choice.other, choice.losses
        for kind, loss in losses.items():
            metrics.validation.labels(target.name, kind).set(loss)
        common = {"validation_steps": val, "train_steps": len(y) - val, "step_seconds": step, "quantile": q,
                  "losses": losses, "baseline": choice.baseline, "window_losses": choice.windows}  # fmt: skip
        reason = choice.reason
        use_candidate = chosen.kind == CANDIDATE
        name = f"demand/{target.name}"
        await self.store.save_model(
            ModelRecord(name, other.kind, other.to_record(), jsonable({**common, "used": False}), now, None,
                        in_use=False)
        )  # fmt: skip
        guard = {"guard": state.guard.state()} if state.guard is not None else {}
        baseline = other if use_candidate else chosen
        params = {**chosen.to_record(), "baseline": baseline.to_record()}
        await self.store.save_model(ModelRecord(name, chosen.kind, params,
                                                jsonable({**common, "used": True, "reason": reason, **guard}), now,
                                                None, in_use=True))  # fmt: skip
        for kind in MODEL_KINDS:
            metrics.in_use.labels(target.name, kind).set(1 if kind == chosen.kind else 0)
        metrics.refits.labels(target.name, "candidate" if use_candidate else "fallback").inc()
        state.model, state.fitted_at, state.reason, state.metrics = chosen, now, reason, common
        state.baseline = baseline
        state.trained_on = timedelta(seconds=len(y) * step)
        logger.info("%s: forecast model refitted: %s", target.name, reason)
        return chosen

    async def _restore(self, target: Target, state: _State, now: datetime) -> None:
        """Reuse the model in use and the guard's books from the registry (a restart neither waits for a
        refit nor forgets what the shadows have seen, up to the last refit)."""
        state.restored = True
        try:
            rec = await self.store.latest_model(f"demand/{target.name}")
            if rec is not None and rec.params.get("residual_quantiles"):
                state.model = LevelQuantileModel.from_record(rec.params)
                if rec.params.get("baseline"):
                    state.baseline = LevelQuantileModel.from_record(rec.params["baseline"])
                state.fitted_at, state.reason = rec.created_at, f"restored from the model registry ({rec.kind})"
                signal = target.demand_signal()
                if signal is not None and isinstance(rec.metrics.get("guard"), dict):
                    self._guard(target, signal, state).restore(rec.metrics["guard"], now)
        except Exception as exc:
            logger.warning("%s: could not restore the forecast model: %s", target.name, exc)

    def status(self) -> dict[str, Any]:
        return {
            name: {"model": s.model.kind if s.model else None, "window": s.model.window if s.model else None,
                   "fitted_at": s.fitted_at.isoformat() if s.fitted_at else None, "reason": s.reason,
                   "guard": s.guard.evidence() if s.guard is not None and s.verdict is not None else None}
            for name, s in self.states.items()
        }  # fmt: skip


def build(deps: AreaDeps) -> AreaHandle:
    """The predictive area: forecasts for the loop, the horizon forecasts (for alert rules too, offered as
    `"forecast_horizon"`), refit jobs, `/status` sections `predictive` and `forecast_horizon`."""
    horizon = HorizonForecasts(deps.observer, deps.store, deps.policy, monitor=deps.monitor)
    service = ForecastService(deps.observer, deps.store, deps.policy, monitor=deps.monitor, horizon=horizon)
    handle = AreaHandle(
        jobs=[
            PeriodicJob("predictive-refit", lambda p: timedelta(minutes=5), service.refit_due),
            # paths move once per grid step (>= 1m)
            PeriodicJob("predictive-horizon", lambda p: min(p.loop.interval, timedelta(minutes=1)), horizon.run),
        ],
        status={"predictive": service.status, "forecast_horizon": horizon.status},
        metrics=(PredictiveMetrics, HorizonMetrics),
        offers={"forecast_horizon": horizon},
        forecaster=service,
        close=horizon.aclose,  # closers run in reverse: before the state DB closes
    )
    policy = deps.policy().policy
    modes = {t.name: t.predictive.mode.value for t in policy.targets}
    logger.info("predictive scaling: %s", ", ".join(f"{k} {v}" for k, v in modes.items()) or "no targets")
    keys = horizon.specs()
    if keys:
        logger.info("horizon forecasts: %s", ", ".join(
            f"{t}/{s} ({', '.join(sorted({who for _, who in spec.asked}))})" for (t, s), spec in keys.items()))  # fmt: skip
    return handle


AREA = AreaPlugin("predictive", build)
