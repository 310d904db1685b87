"""`AlertRulesJob`: evaluate the alert rules after the loop's ticks and run their actions.

It is a periodic job (`PeriodicJobs`, every `loop.interval`) rather than a stage inside the loop,
so the loop's code stays about scaling; it reads what the tick saw and decided (`loop.status`),
scores the watched signals (`AnomalyScorer`), gathers the forecast paths for predicted breaches, calls
the pure `rules.evaluate()`, and hands every action to the one `ActionRunner` (journal, execute, count).

* A predicted_breach rule reads the path of its (target, signal) from the horizon forecasts
  (`empire.agent.horizon`, offered by the predictive area as `services["forecast_horizon"]`): one
  point per grid step up to the rule's own horizon, a real model forecast at that horizon, at the
  target's `predictive.quantile`; plus the scaling forecast (`scheduling_buffer` ahead) when the
  target's scaling is predictive. A target whose scaling is not predictive still gets the path.

* An alert whose action failed (for example the DB was down) keeps its rule's previous state, so
  the next run tries again instead of believing it fired.
* A scale remediation starts from the replicas the tick settled on, and its effect is recorded in
  the loop's stabilization history (raw recommendation, and the scale event once applied), so the
  next tick's scale-down window holds it instead of undoing it.
* At its first run it restores the rule state from the firing alerts in the DB: a restart neither
  repeats an alert nor forgets to resolve one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.metrics import AlertMetrics
from empire.agent.alerting.rules import RuleInputs, RuleStatus, evaluate, restore_state
from empire.agent.alerting.scoring import AnomalyScorer, watched_signals
from empire.agent.alerting.store import AlertStore
from empire.agent.deciding import keep_for
from empire.agent.journal import ActionRunner
from empire.agent.types import Alert, Forecast, Observation, OutcomeStatus, Sample, SampleStatus, ScaleTo, action_key
from empire.policies.alerting import RuleKind
from empire.policies.schema import Policy

__all__ = ["AlertRulesJob", "observations_from_loop"]

logger = logging.getLogger(__name__)

History = Callable[[str, str, datetime, datetime, float], Awaitable[list[tuple[datetime, float]]]]
"""(target, signal, start, end, step seconds) -> (timestamp, value) points: the metric source's history."""
WARM_WINDOW = timedelta(days=1)


def observations_from_loop(loop: Any) -> tuple[dict[str, Observation], dict[str, int]]:
    """Observations (signal values as the last tick saw them) and desired replicas per target."""
    observations: dict[str, Observation] = {}
    desired: dict[str, int] = {}
    for name, status in getattr(loop, "status", {}).items():
        d = getattr(status, "decision", None)
        if d is None:
            continue
        samples = []
        for signal, info in (d.details.get("signals") or {}).items():
            try:
                st = SampleStatus(info.get("status", "ok"))
            except ValueError:
                st = SampleStatus.invalid
            value = info.get("value")
            value = float(value) if isinstance(value, int | float) else None
            samples.append(Sample(signal, value, d.at, info.get("staleness"), st))
        observations[name] = Observation(name, d.at, tuple(samples), d.current)
        if d.desired is not None:
            desired[name] = d.desired
    return observations, desired


class AlertRulesJob:
    def __init__(self, policy: Callable[[], Policy], loop: Any, runner: ActionRunner, store: AlertStore,
                 scorer: AnomalyScorer | None = None, horizon: Callable[[], Any] | None = None,
                 metrics: AlertMetrics | None = None, history: History | None = None) -> None:  # fmt: skip
        self.policy = policy
        self.horizon = horizon  # () -> HorizonForecasts | None (looked up per run: set up after alerting)
        self.loop = loop
        self.runner = runner
        self.store = store
        self.scorer = scorer or AnomalyScorer()
        self.metrics = metrics
        self.history = history  # warms the anomaly detectors at the first run (None: they learn from scratch)
        self.state: dict[str, RuleStatus] = {}
        self.restored = False
        self.last_results: list[dict[str, Any]] = []

    async def _forecasts(self, pol: Policy, now: datetime) -> dict[tuple[str, str], list[Forecast]]:
        keys = {(r.target, r.signal) for r in pol.alerting.rules if r.kind == RuleKind.predicted_breach}
        out: dict[tuple[str, str], list[Forecast]] = {}
        forecaster = getattr(self.loop, "forecaster", None)
        horizon = self.horizon() if self.horizon is not None else None
        for target in sorted({t for t, _ in keys}) if forecaster is not None else ():
            try:
                f = await forecaster(pol.target(target), now)
            except Exception as exc:
                logger.warning("alerting: forecast of %s unavailable: %s", target, exc)
                continue
            if f is not None:
                out.setdefault((target, f.signal), []).append(f)
        for target, signal in sorted(keys) if horizon is not None else ():
            try:
                path = await horizon.path(target, signal, now)
            except Exception as exc:
                logger.warning("alerting: horizon forecast of %s/%s unavailable: %s", target, signal, exc)
                continue
            if path is not None:
                out.setdefault((target, signal), []).extend(path.forecasts(now))
        return out

    async def _warm(self, pol: Policy, now: datetime) -> None:
        """Fit each watched signal's detector on its last `WARM_WINDOW` from the metric source, so a
        (re)started daemon does not spend the detector's learning period (300 points: 75 minutes at
        a 15 s interval) blind. A source that cannot answer leaves the detector to learn as it goes."""
        if self.history is None:
            return
        step = max(60.0, pol.loop.interval.total_seconds())
        for (target, signal), threshold in watched_signals(pol).items():
            try:
                points = await self.history(target, signal, now - WARM_WINDOW, now, step)
            except Exception as exc:
                logger.warning("alerting: no history to warm the anomaly detector of %s/%s: %s", target, signal, exc)
                continue
            self.scorer.warm((target, signal), threshold, points)
            logger.info("alerting: anomaly detector of %s/%s warmed on %d points", target, signal, len(points))

    async def __call__(self, now: datetime) -> None:
        pol = self.policy()
        if not self.restored:
            firing = await self.store.list_alerts("firing", limit=10_000)
            self.state = restore_state(pol, firing, now)
            self.restored = True
            await self._warm(pol, now)
        observations, desired = observations_from_loop(self.loop)
        histories = getattr(self.loop, "histories", {})
        scores = self.scorer.score(pol, observations)
        if self.metrics is not None:
            self.metrics.set_anomaly_scores(scores)
        inputs = RuleInputs(observations, scores, await self._forecasts(pol, now), dict(histories), desired)
        ev = evaluate(pol, inputs, self.state, now)
        histories.update(ev.histories)
        state = dict(ev.state)
        for action in ev.actions:
            key = None
            if isinstance(action, Alert):  # a short key: the subject lists every label
                key = action_key(action.kind, f"{action.rule}/{fingerprint(action.labels)}", now,
                                 "resolved" if action.resolved else "firing")  # fmt: skip
            out = await self.runner.run(action, at=now, key=key)
            if isinstance(action, Alert) and out.status == OutcomeStatus.failed:
                state[action.rule] = self.state.get(action.rule, RuleStatus())  # not stored: try again
            if isinstance(action, ScaleTo) and out.status == OutcomeStatus.applied and action.current is not None:
                try:
                    _, period = keep_for(pol.target(action.target))
                except KeyError:
                    continue
                h = histories.get(action.target)
                if h is not None:
                    histories[action.target] = h.scaled(now, action.current, action.replicas,
                                                         timedelta(seconds=period))  # fmt: skip
        self.state = state
        self.last_results = [{"rule": r.rule, "state": r.state, "value": r.value, "note": r.note} for r in ev.results]
