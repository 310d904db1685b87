"""`HorizonForecasts`: the service around the pure horizon path (`empire.agent.horizon.path`).

It is the I/O half: fetches history (`Observer.history`, `query_range` in chunks), fits in a worker
thread so the loop never waits for gradient boosting, writes and restores the model registry, keeps
the resampled history between updates so each new step costs one small query, exports metrics and
answers `/status`. What it computes is all in `path.py`.

Concurrency: the periodic job, the alert rules job and the loop's forecaster may ask for a path at
the same time; one lock makes the fetch-and-extend of the history happen once per step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from empire.agent.horizon.metrics import HorizonMetrics
from empire.agent.horizon.path import (
    HorizonPath,
    HorizonSpec,
    Key,
    LeadFit,
    bucket_means,
    build_path,
    daemon_forecaster,
    dump_models,
    fit_leads,
    forecast_point,
    grid_times,
    horizon_specs,
    load_models,
    sample_step,
)
from empire.agent.records import ModelRecord, jsonable
from empire.models.forecast import MODEL, DemandForecaster, InsufficientHistory, quantile_name
from empire.policies.durations import format_duration

if TYPE_CHECKING:
    from empire.agent.monitor import Monitor
    from empire.agent.ports import Observer, StateStore
    from empire.policies.loading import LoadedPolicy

__all__ = ["HorizonForecasts", "history_query"]

logger = logging.getLogger(__name__)

_CHUNK = 10_000  # samples per query_range (Prometheus answers at most 11,000 points per series)
_CLOSE_WAIT = 60.0  # seconds a shutdown waits for a refit in flight


def history_query(observer: Any, target: str, signal: str, query: str) -> str:
    """The query `Observer.history` understands: PromQL, or `target/signal` for a replayed trace
    (an observer with `history_by_signal`; asked, not type-checked, so areas import no adapter)."""
    return f"{target}/{signal}" if getattr(observer, "history_by_signal", False) else query


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _label(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))


@dataclass
class _KeyState:
    fits: list[LeadFit] | None = None
    config: dict[str, Any] | None = None
    fitted_at: datetime | None = None
    failed_at: datetime | None = None
    trained_on: float | None = None  # seconds of history the models in use were fitted on
    restored: bool = False
    reason: str = "not fitted yet"
    grid_end: float | None = None
    y: np.ndarray | None = None
    path: HorizonPath | None = None
    demand_series: set[tuple[str, str]] = field(default_factory=set)
    mae_series: set[tuple[str, str]] = field(default_factory=set)


class HorizonForecasts:
    """Fits, stores and serves the horizon forecast of every key the policy asks about (module doc).

    `run(now)` is the periodic job (refits that are due, then the paths); `await path(target, signal,
    now)` is what alert rules and decisions read (recomputed at most once per grid step);
    `status()` is the `/status` section."""

    def __init__(
        self,
        observer: Observer,
        store: StateStore,
        policy: Callable[[], LoadedPolicy],
        *,
        monitor: Monitor | None = None,
        forecaster: DemandForecaster | None = None,
        retry_after: timedelta = timedelta(minutes=30),
    ) -> None:
        from empire.agent.monitor import Monitor

        self.observer, self.store, self.policy = observer, store, policy
        self.monitor = monitor or Monitor()
        self.template = forecaster if forecaster is not None else daemon_forecaster()
        self.retry_after = retry_after
        self.states: dict[Key, _KeyState] = {}
        self._lock: anyio.Lock | None = None
        self._closing = False
        self._running = 0
        self._drained: anyio.Event | None = None

    def specs(self) -> dict[Key, HorizonSpec]:
        return horizon_specs(self.policy().policy)

    async def run(self, now: datetime) -> None:
        """The periodic job: refit what is due, then bring every path up to date (errors are per key)."""
        if self._closing:
            return
        self._running += 1
        try:
            specs = self.specs()
            self._forget(specs)
            for key, spec in specs.items():
                if self._closing:
                    return
                await self.refit_if_due(spec, now)
                try:
                    await self.path(*key, now)
                except Exception as exc:
                    logger.warning("%s/%s: horizon forecast unavailable: %s", *key, exc)
        finally:
            self._running -= 1
            if not self._running and self._drained is not None:
                self._drained.set()

    async def aclose(self) -> None:
        """At shutdown, before the state DB closes: start nothing new and let a run in flight finish
        (a fit in a worker thread cannot be interrupted; the scheduler does not wait for its jobs)."""
        self._closing = True
        if self._running:
            self._drained = anyio.Event()
            with anyio.move_on_after(_CLOSE_WAIT):
                await self._drained.wait()

    # -- fitting ----------------------------------------------------------------------------------------
    def _state(self, spec: HorizonSpec) -> _KeyState:
        return self.states.setdefault((spec.target, spec.signal), _KeyState())

    @staticmethod
    def _usable(st: _KeyState, spec: HorizonSpec) -> bool:
        return st.fits is not None and st.config == spec.config

    async def refit_if_due(self, spec: HorizonSpec, now: datetime) -> None:
        st = self._state(spec)
        if not st.restored:
            await self._restore(spec, st)
        age = (now - st.fitted_at).total_seconds() if st.fitted_at is not None else None
        young = st.trained_on is not None and st.trained_on < spec.history
        due = (not self._usable(st, spec) or age is None or age >= spec.refit_every
               or (young and st.trained_on is not None and age >= st.trained_on))  # fmt: skip
        if not due or (st.failed_at is not None and now - st.failed_at < self.retry_after):
            return
        try:
            await self.refit(spec, now)
        except Exception as exc:
            st.failed_at, st.reason = now, f"refit failed: {exc}"
            self.monitor.group(HorizonMetrics).horizon_refits.labels(spec.target, spec.signal, "error").inc()
            logger.warning("%s/%s: horizon model refit failed: %s", spec.target, spec.signal, exc)

    async def refit(self, spec: HorizonSpec, now: datetime) -> list[LeadFit] | None:
        """Fetch `predictive.history`, fit one guarded model per horizon (worker thread), register them."""
        st = self._state(spec)
        n = max(2, int(spec.history // spec.step))
        end = math.floor(now.timestamp() / spec.step) * spec.step
        y = await self._fetch(spec, end, n)
        ts = grid_times(end, spec.step, n)
        valid = np.isfinite(y)
        metrics = self.monitor.group(HorizonMetrics)
        if valid.sum() < 2:
            st.failed_at, st.reason = now, f"no history of {spec.signal} to forecast from"
            metrics.horizon_refits.labels(spec.target, spec.signal, "short_history").inc()
            return None
        first = int(np.argmax(valid))
        fits = await anyio.to_thread.run_sync(
            partial(fit_leads, y[first:], ts[first:], spec.step, spec.leads, spec.quantiles, self.template)
        )
        if self._closing:  # shutting down while the models were fitted: do not write to a closing DB
            return None
        blob = await anyio.to_thread.run_sync(dump_models, [f.model for f in fits])
        longest = fits[-1]
        span = (n - first) * spec.step
        record_metrics = {
            "validation_mae": longest.validation_mae, "fallback_validation_mae": longest.fallback_mae,
            "used": longest.model is not None, "reason": longest.reason, "valid_steps": int(valid.sum()),
            "train_span_seconds": span, "asked": [[_label(h), who] for h, who in spec.asked],
            "horizons": {_label(f.lead * spec.step): {"method": f.method, "validation_mae": f.validation_mae,
                                                      "fallback_validation_mae": f.fallback_mae, "reason": f.reason}
                         for f in fits},
        }  # fmt: skip
        est = self.template.get_params()
        params = {
            **spec.config,
            "history_seconds": spec.history,
            "estimator": {k: est[k] for k in ("max_iter", "learning_rate", "min_samples_leaf", "min_history")},
        }
        await self.store.save_model(ModelRecord(spec.name, longest.method, jsonable(params), jsonable(record_metrics),
                                                now, blob, in_use=True))  # fmt: skip
        short = longest.validation_mae is None
        result = "short_history" if short else ("model" if longest.model is not None else "fallback")
        metrics.horizon_refits.labels(spec.target, spec.signal, result).inc()
        self._adopt(spec, st, fits, now, span, f"fitted: {longest.reason}")
        if st.grid_end is None or st.grid_end <= end:
            st.y, st.grid_end = y, end  # the freshest history: the next path needs no fetch
        logger.info("%s/%s: horizon model refitted (%s): %s", spec.target, spec.signal,
                    ", ".join(_label(f.lead * spec.step) for f in fits), longest.reason)  # fmt: skip
        return fits

    def _adopt(self, spec: HorizonSpec, st: _KeyState, fits: list[LeadFit], at: datetime, span: float | None,
               reason: str) -> None:  # fmt: skip
        st.fits, st.config, st.fitted_at, st.trained_on = fits, spec.config, at, span
        st.failed_at, st.reason, st.path = None, reason, None
        gauge = self.monitor.group(HorizonMetrics).horizon_mae
        series = set()
        for f in fits:
            for model, value in ((MODEL, f.validation_mae), ("fallback", f.fallback_mae)):
                if value is not None and math.isfinite(value):
                    labels = (_label(f.lead * spec.step), model)
                    gauge.labels(spec.target, spec.signal, *labels).set(value)
                    series.add(labels)
        for labels in st.mae_series - series:
            gauge.remove(spec.target, spec.signal, *labels)
        st.mae_series = series

    async def _restore(self, spec: HorizonSpec, st: _KeyState) -> None:
        """Reuse the models in use from the registry when they were fitted for the same step and horizons."""
        st.restored = True
        try:
            rec = await self.store.latest_model(spec.name)
            if rec is None or not rec.blob:
                return
            if {k: rec.params.get(k) for k in spec.config} != spec.config:
                logger.info("%s: stored horizon model has another step or horizons; refitting", spec.name)
                return
            models = await anyio.to_thread.run_sync(load_models, rec.blob)
            info = rec.metrics.get("horizons") or {}
            if len(models) != len(spec.leads):
                return
            fits = []
            for lead, model in zip(spec.leads, models, strict=True):
                h = info.get(_label(lead * spec.step)) or {}
                mae, fb = h.get("validation_mae"), h.get("fallback_validation_mae")
                fits.append(LeadFit(lead, model, mae if isinstance(mae, float | int) else None,
                                    fb if isinstance(fb, float | int) else None, str(h.get("reason", ""))))  # fmt: skip
            span = rec.metrics.get("train_span_seconds")
            self._adopt(spec, st, fits, rec.created_at, float(span) if isinstance(span, int | float) else None,
                        f"restored from the model registry ({rec.kind}, fitted {rec.created_at.isoformat()})")  # fmt: skip
            logger.info("%s: horizon model restored from the registry", spec.name)
        except Exception as exc:
            logger.warning("%s: could not restore the horizon model: %s", spec.name, exc)

    # -- paths ------------------------------------------------------------------------------------------
    async def path(self, target: str, signal: str, now: datetime) -> HorizonPath | None:
        """The key's path from the last complete step before `now`; None while no model is fitted."""
        spec = self.specs().get((target, signal))
        if spec is None:
            return None
        st = self._state(spec)
        if not st.restored:
            await self._restore(spec, st)
        if not self._usable(st, spec):
            return None
        end = math.floor(now.timestamp() / spec.step) * spec.step
        if st.path is not None and st.path.origin == _at(end):
            return st.path
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if st.path is not None and st.path.origin == _at(end):
                return st.path
            y = await self._extend(spec, st, end)
            ts = grid_times(end, spec.step, len(y))
            anchors = []
            for fit in st.fits or ():
                try:
                    anchors.append(forecast_point(fit, y, ts, spec.step, spec.quantiles))
                except InsufficientHistory as exc:
                    logger.info("%s/%s: no forecast %s ahead: %s", target, signal, _label(fit.lead * spec.step), exc)
            last = float(y[-1]) if len(y) and math.isfinite(y[-1]) else None
            st.path = HorizonPath(target, signal, _at(end), spec.step, build_path(last, anchors, spec.step),
                                  spec.quantile)  # fmt: skip
            self._export(spec, st, st.path)
            return st.path

    async def _extend(self, spec: HorizonSpec, st: _KeyState, end: float) -> np.ndarray:
        """The history grid up to `end`: only the steps since the last update (and the last one again,
        whose late samples may have arrived) are fetched."""
        n = max(2, int(spec.history // spec.step))
        old, prev = st.y, st.grid_end
        if old is None or prev is None or len(old) != n or end < prev or end - prev >= n * spec.step:
            st.y = await self._fetch(spec, end, n)
        elif end > prev:
            m = round((end - prev) / spec.step) + 1
            st.y = np.concatenate([old[:-1], await self._fetch(spec, end, m)])[-n:]
        st.grid_end = end
        assert st.y is not None
        return st.y

    async def _fetch(self, spec: HorizonSpec, end: float, steps: int) -> np.ndarray:
        """Mean per step of the samples in the `steps` steps ending at `end` (query_range in chunks)."""
        fine = sample_step(spec.step, self.policy().policy.loop.interval.total_seconds())
        per = round(spec.step / fine)
        total = steps * per
        start = end - steps * spec.step + fine
        query = history_query(self.observer, spec.target, spec.signal, spec.query)
        points: list[tuple[float, float]] = []
        for first in range(0, total, _CHUNK):
            last = min(first + _CHUNK, total) - 1
            chunk = await self.observer.history(query, _at(start + first * fine), _at(start + last * fine), fine)
            points.extend((at.timestamp(), value) for at, value in chunk)
        return bucket_means(points, end, spec.step, steps, per)

    def _export(self, spec: HorizonSpec, st: _KeyState, path: HorizonPath) -> None:
        gauge = self.monitor.group(HorizonMetrics).horizon_demand
        series = set()
        for p in path.anchors():
            for q, value in p.quantiles.items():
                labels = (quantile_name(q), _label(p.seconds))
                gauge.labels(spec.target, spec.signal, *labels).set(value)
                series.add(labels)
        for labels in st.demand_series - series:
            gauge.remove(spec.target, spec.signal, *labels)
        st.demand_series = series

    def _forget(self, specs: Mapping[Key, HorizonSpec]) -> None:
        """Drop the state and the metric series of keys the policy no longer asks about."""
        metrics = self.monitor.group(HorizonMetrics)
        for key in [k for k in self.states if k not in specs]:
            st = self.states.pop(key)
            for labels in st.demand_series:
                metrics.horizon_demand.remove(*key, *labels)
            for labels in st.mae_series:
                metrics.horizon_mae.remove(*key, *labels)

    # -- reading ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (target, signal), spec in self.specs().items():
            st = self.states.get((target, signal)) or _KeyState()
            out[f"{target}/{signal}"] = {
                "step": _label(spec.step), "asked": {who: _label(h) for h, who in spec.asked}, "notes": spec.notes(),
                "fitted_at": st.fitted_at.isoformat() if st.fitted_at else None, "reason": st.reason,
                "horizons": {_label(f.lead * spec.step): {"method": f.method, "validation_mae": f.validation_mae,
                                                          "fallback_validation_mae": f.fallback_mae}
                             for f in st.fits or ()},
                "path": st.path.summary() if st.path is not None else None,
            }  # fmt: skip
        return jsonable(out)
