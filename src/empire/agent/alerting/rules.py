"""Alert rules: from what the loop saw and predicted to `Alert` and remediation actions. PURE.

`evaluate(policy, inputs, state, now)` is to alerting what `decide()` is to scaling: no clock, no
I/O; `now`, the observations, the anomaly scores and the forecasts are arguments, and the rules'
memory (`RuleState`) goes in and comes out as a value, so the backtest and the tests replay days of
alerting on a fake clock. Three kinds of rule:

* `threshold`: the signal's current value is above (below) `threshold`;
* `anomaly`: the anomaly score of the signal (`empire.models.anomaly`, 0..1) is at or above
  `threshold`; the score flags single points, so such an alert keeps firing for `keep_firing_for`
  (default 15 minutes) after the last anomalous point: one incident, one alert;
* `predicted_breach`: the demand forecast (a path of `Forecast` quantiles at increasing horizons,
  from `empire.agent.horizon`) crosses `threshold` within `horizon` (default 60 minutes): the
  alert fires before the breach, while there is still time to act. The alert says when
  (`breach_in`), at which quantile, and which model made the crossing point (`forecast_model`;
  `interpolated` when it lies between two forecasts).

Like Prometheus: the condition must hold for `for` before the alert fires (it is *pending* until
then); when the condition stops holding the alert resolves; when the signal has no data the state
is kept, and a firing alert without data for `resolve_timeout` resolves. Only transitions become
actions (fire, resolve), so the journal holds one row per alert episode, not one per tick; the
dispatcher repeats notifications of alerts that keep firing.

Each alert carries the labels `alertname`, `target`, `signal`, `severity` (plus the rule's own
labels), the `summary` with `{target}`, `{signal}`, `{value}` and `{threshold}` filled in, and the
annotations `explain` (`empire explain <target>`) and, with `alerting.external_url`, `link`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from empire.agent.alerting.notification import explain_command
from empire.agent.alerting.remediation import remediate, undo
from empire.agent.stabilizing import TargetHistory
from empire.agent.types import AREA_LABEL, Action, Alert, Forecast, Observation, Reason, SampleStatus
from empire.policies.alerting import AlertRule, RuleKind
from empire.policies.schema import Policy

__all__ = [
    "ANOMALY_KEEP_FIRING",
    "Evaluated",
    "RuleInputs",
    "RuleResult",
    "RuleState",
    "RuleStatus",
    "SignalKey",
    "alert_labels",
    "evaluate",
    "restore_state",
]

SignalKey = tuple[str, str]  # (target, signal)
ANOMALY_KEEP_FIRING = timedelta(minutes=15)


@dataclass(frozen=True)
class RuleInputs:
    """What the rules look at in one tick. Keys of the mappings are (target, signal) or target names."""

    observations: Mapping[str, Observation] = field(default_factory=dict)
    anomaly_scores: Mapping[SignalKey, float] = field(default_factory=dict)
    forecasts: Mapping[SignalKey, Sequence[Forecast]] = field(default_factory=dict)
    histories: Mapping[str, TargetHistory] = field(default_factory=dict)  # for scale remediations
    desired: Mapping[str, int] = field(default_factory=dict)  # replicas this tick's scaling settled on


@dataclass(frozen=True)
class RuleStatus:
    """One rule's memory between ticks."""

    active_since: datetime | None = None  # condition true since (pending, then firing)
    last_true: datetime | None = None  # last tick the condition held (keep_firing_for)
    last_data: datetime | None = None  # last tick the rule had data (resolve_timeout)
    fired: Alert | None = None  # the alert raised, while firing
    undo: tuple[Action, ...] = ()  # actions that end its remediation when it resolves


RuleState = Mapping[str, RuleStatus]


@dataclass(frozen=True)
class RuleResult:
    """How one rule came out this tick (for logs, `empire explain` and tests)."""

    rule: str
    state: str  # inactive | pending | firing | nodata
    condition: bool | None
    value: float | None
    note: str = ""


@dataclass(frozen=True)
class Evaluated:
    actions: tuple[Action, ...]
    state: dict[str, RuleStatus]
    histories: dict[str, TargetHistory]
    results: tuple[RuleResult, ...]


def alert_labels(rule: AlertRule) -> dict[str, str]:
    """The alert's identity: the rule's labels, then the fixed ones (which a rule cannot override)."""
    return {**rule.labels, "alertname": rule.name, "target": rule.target, "signal": rule.signal,
            "severity": rule.severity.value}  # fmt: skip


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


class _SafeDict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _summary(rule: AlertRule, value: float | None) -> str:
    template = rule.summary or "{signal} of {target} " + (
        "is anomalous" if rule.kind == RuleKind.anomaly else f"{rule.direction} {{threshold}}"
    )
    fields = _SafeDict(target=rule.target, signal=rule.signal, value=_fmt(value), threshold=_fmt(rule.threshold))
    try:
        return template.format_map(fields)
    except (ValueError, IndexError):
        return template  # a stray brace: show the template rather than fail the tick


def _crosses(rule: AlertRule, value: float) -> bool:
    return value > rule.threshold if rule.direction == "above" else value < rule.threshold


def _condition(rule: AlertRule, inputs: RuleInputs) -> tuple[bool | None, float | None, dict[str, str]]:
    """(condition or None for no data, the value shown, extra annotations)."""
    key = (rule.target, rule.signal)
    obs = inputs.observations.get(rule.target)
    sample = obs.sample(rule.signal) if obs else None
    current = sample.value if sample and sample.status == SampleStatus.ok else None
    if rule.kind == RuleKind.threshold:
        if current is None or not math.isfinite(current):
            return None, None, {}
        return _crosses(rule, current), current, {}
    if rule.kind == RuleKind.anomaly:
        score = inputs.anomaly_scores.get(key)
        if score is None or not math.isfinite(score):
            return None, current, {}
        return score >= rule.threshold, current if current is not None else score, {"anomaly_score": f"{score:.3f}"}
    path = [f for f in inputs.forecasts.get(key, ()) if 0 <= f.horizon_seconds <= rule.horizon.total_seconds()]
    path = [f for f in sorted(path, key=lambda f: f.horizon_seconds) if math.isfinite(f.value)]
    if not path:
        return None, current, {}
    hit = next((f for f in path if _crosses(rule, f.value)), None)
    if hit is None:
        peak = max(path, key=lambda f: f.value) if rule.direction == "above" else min(path, key=lambda f: f.value)
        return False, peak.value, {}
    extra = {"breach_in": f"{round(hit.horizon_seconds / 60)}m", "forecast_quantile": f"p{round(hit.quantile * 100)}"}
    if hit.model:  # e.g. gbm, seasonal_change, or interpolated (a point between two forecasts)
        extra["forecast_model"] = hit.model
    return True, hit.value, extra


def _alert(rule: AlertRule, policy: Policy, value: float | None, extra: Mapping[str, str]) -> Alert:
    annotations = {"summary": _summary(rule, value), "explain": explain_command(rule.target),
                   "kind": rule.kind.value, "threshold": _fmt(rule.threshold), **extra}  # fmt: skip
    base = policy.alerting.external_url
    if base:
        annotations["link"] = f"{base.rstrip('/')}/alerts?target={rule.target}"
    return Alert(
        rule=rule.name, severity=rule.severity.value, labels=alert_labels(rule), summary=annotations["summary"],
        reasons=(Reason(rule.kind.value),), value=value, annotations=annotations,
    )  # fmt: skip


def _resolved(fired: Alert, value: float | None, why: str) -> Alert:
    return replace(fired, resolved=True, value=value, annotations={**fired.annotations, "resolved_because": why})


def _keep_firing(rule: AlertRule) -> timedelta:
    if rule.keep_firing_for is not None:
        return rule.keep_firing_for
    return ANOMALY_KEEP_FIRING if rule.kind == RuleKind.anomaly else timedelta(0)


def evaluate(policy: Policy, inputs: RuleInputs, state: RuleState, now: datetime) -> Evaluated:
    """Evaluate every alert rule at `now`. Pure: the same arguments give the same result."""
    actions: list[Action] = []
    new_state: dict[str, RuleStatus] = {}
    histories: dict[str, TargetHistory] = {}
    results: list[RuleResult] = []
    resolve_timeout = policy.alerting.resolve_timeout
    known = {r.name for r in policy.alerting.rules}
    for name, st in state.items():  # rules removed from the policy: resolve what they raised
        if name not in known and st.fired is not None:
            actions.append(_resolved(st.fired, None, "rule removed from the policy"))
            actions.extend(st.undo)
    for rule in policy.alerting.rules:
        st = state.get(rule.name, RuleStatus())
        cond, value, extra = _condition(rule, inputs)
        labels = alert_labels(rule)
        if st.fired is not None and dict(st.fired.labels) != labels:  # labels/severity edited while firing
            actions.append(_resolved(st.fired, value, "rule changed"))
            actions.extend(st.undo)
            st = replace(st, fired=None, undo=())
        note = ""
        if cond is None:
            if st.fired is not None and st.last_data is not None and now - st.last_data >= resolve_timeout:
                actions.append(_resolved(st.fired, None, f"no data for {resolve_timeout}"))
                actions.extend(st.undo)
                st, note = RuleStatus(), "no data: resolved"
            state_name = "firing" if st.fired else "nodata"
        elif cond:
            since = st.active_since or now
            st = replace(st, active_since=since, last_true=now, last_data=now)
            if st.fired is None and now - since >= rule.for_:
                alert = _alert(rule, policy, value, extra)
                rem = remediate(rule, policy, now, inputs.observations, {**inputs.histories, **histories},
                                inputs.desired)  # fmt: skip
                actions.append(alert)
                actions.extend(rem.actions)
                if rem.history is not None:
                    histories[rem.history[0]] = rem.history[1]
                note = rem.note
                st = replace(st, fired=alert, undo=undo(rule))
            state_name = "firing" if st.fired else "pending"
        else:
            if st.fired is not None and st.last_true is not None and now - st.last_true < _keep_firing(rule):
                st = replace(st, last_data=now)
                state_name, note = "firing", "condition cleared; keep_firing_for holds it"
            else:
                if st.fired is not None:
                    actions.append(_resolved(st.fired, value, "condition cleared"))
                    actions.extend(st.undo)
                st, state_name = RuleStatus(last_data=now), "inactive"
        new_state[rule.name] = st
        results.append(RuleResult(rule.name, state_name, cond, value, note))
    return Evaluated(tuple(actions), new_state, histories, tuple(results))


def restore_state(policy: Policy, firing: Sequence[Any], now: datetime) -> dict[str, RuleStatus]:
    """Rule state after a restart, from the firing alerts in the state DB (`AlertInstance`s).

    A rule whose alert is firing resumes as firing (no duplicate alert, no lost resolution);
    pending conditions start over, as they do in Prometheus."""
    rules = {r.name: r for r in policy.alerting.rules}
    out: dict[str, RuleStatus] = {}
    for a in firing:
        if AREA_LABEL in a.labels:
            continue  # raised by an area (backups), which re-evaluates it itself
        rule = rules.get(a.rule)
        reason = Reason(rule.kind.value) if rule is not None else Reason.manual
        fired = Alert(a.rule, a.severity, dict(a.labels), a.annotations.get("summary", ""), (reason,), a.value,
                      False, dict(a.annotations))  # fmt: skip
        # A removed or edited rule's alert is restored as it was; `evaluate` then resolves it.
        out[a.rule] = RuleStatus(a.starts_at, now, now, fired, undo(rule) if rule is not None else ())
    return out
