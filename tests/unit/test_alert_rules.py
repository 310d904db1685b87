"""Alert rule evaluation: threshold, anomaly score and predicted breach; `for`, keep_firing_for,
no-data handling, labels/annotations, and remediation actions. Pure, on a fake clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from empire.agent.alerting.notification import AlertInstance
from empire.agent.alerting.rules import RuleInputs, RuleState, evaluate, restore_state
from empire.agent.stabilizing import TargetHistory
from empire.agent.types import (
    Alert,
    DrainAccount,
    Forecast,
    Observation,
    PausePersona,
    Reason,
    Sample,
    SampleStatus,
    ScaleTo,
)
from empire.policies.schema import Policy, parse_policy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def policy(*rules: dict[str, Any], **alerting: Any) -> Policy:
    return parse_policy(
        {
            "targets": [
                {"name": "api", "workload": {"name": "api", "namespace": "web"}, "min_replicas": 2,
                 "max_replicas": 10, "signals": [{"name": "latency", "query": "q", "target": 30}]},
                {"name": "generator", "workload": {"name": "gen"}, "max_replicas": 40,
                 "signals": [{"name": "queue", "query": "q", "target": 50, "type": "total"}]},
            ],
            "providers": [{"name": "music", "kind": "simulated",
                           "accounts": [{"name": "main-1", "requests_per_minute": 60}]}],
            "personas": [{"name": "luna", "genres": ["synthwave"], "cadence": {"tracks": 1, "every": "1d"},
                          "providers": ["music"]}],
            "alerting": {"rules": list(rules), **alerting},
        }
    )  # fmt: skip


SLOW = {
    "name": "api-slow",
    "kind": "threshold",
    "target": "api",
    "signal": "latency",
    "threshold": 30,
    "for": "5m",
    "severity": "critical",
    "summary": "p95 latency {value}s above {threshold}s",
    "labels": {"team": "web"},
}


def obs(target: str, signal: str, value: float | None, replicas: int = 4, at: datetime = T0,
        status: SampleStatus = SampleStatus.ok, **annotations: str) -> Observation:  # fmt: skip
    st = SampleStatus.missing if value is None else status
    return Observation(target, at, (Sample(signal, value, at, 0.0, st),), replicas, annotations=annotations)


class Run:
    def __init__(self, pol: Policy) -> None:
        self.policy, self.state, self.now = pol, {}, T0
        self.state_: RuleState = {}
        self.histories: dict[str, TargetHistory] = {}

    def tick(self, seconds: float = 0, **kw: Any) -> list[Any]:
        self.now += timedelta(seconds=seconds)
        inputs = RuleInputs(histories=self.histories, **kw)
        ev = evaluate(self.policy, inputs, self.state_, self.now)
        self.state_ = ev.state
        self.histories.update(ev.histories)
        self.results = {r.rule: r for r in ev.results}
        return list(ev.actions)

    def latency(self, seconds: float, value: float | None, **kw: Any) -> list[Any]:
        return self.tick(seconds, observations={"api": obs("api", "latency", value, **kw)})


def test_threshold_with_for_is_pending_then_fires_once_then_resolves() -> None:
    run = Run(policy(SLOW))
    assert run.latency(0, 45) == [] and run.results["api-slow"].state == "pending"
    assert run.latency(240, 50) == []
    [alert] = run.latency(60, 55)  # held for 5 minutes: fires
    assert isinstance(alert, Alert) and not alert.resolved
    assert alert.labels == {"alertname": "api-slow", "target": "api", "signal": "latency", "severity": "critical",
                            "team": "web"}  # fmt: skip
    assert alert.summary == "p95 latency 55s above 30s" and alert.reasons == (Reason.threshold,)
    assert alert.annotations["explain"] == "empire explain api" and alert.value == 55
    assert run.latency(15, 60) == []  # still firing: no new action (dedup at the source)
    [resolved] = run.latency(15, 10)
    assert resolved.resolved and resolved.labels == alert.labels and resolved.value == 10
    assert run.results["api-slow"].state == "inactive"


def test_condition_clearing_during_for_resets_pending() -> None:
    run = Run(policy(SLOW))
    run.latency(0, 45)
    run.latency(200, 10)  # cleared before 5 minutes
    run.latency(60, 45)
    assert run.latency(200, 45) == []  # 200 s since it became true again
    assert len(run.latency(100, 45)) == 1


@pytest.mark.parametrize(("direction", "value", "fires"), [("above", 31, True), ("above", 30, False),
                                                            ("below", 29, True), ("below", 31, False)])  # fmt: skip
def test_threshold_direction(direction: str, value: float, fires: bool) -> None:
    run = Run(policy({**SLOW, "for": "0s", "direction": direction}))
    assert bool(run.latency(0, value)) is fires


def test_missing_data_keeps_firing_until_resolve_timeout() -> None:
    run = Run(policy({**SLOW, "for": "0s"}, resolve_timeout="5m"))
    assert len(run.latency(0, 50)) == 1
    assert run.latency(60, None) == []  # missing sample: keep state
    assert run.latency(60, 50, status=SampleStatus.stale) == []
    assert run.results["api-slow"].state == "firing"
    [resolved] = run.latency(180, None)  # 5 minutes since the last data
    assert resolved.resolved and resolved.annotations["resolved_because"].startswith("no data")


def test_rule_removed_from_policy_resolves_its_alert() -> None:
    run = Run(policy({**SLOW, "for": "0s"}))
    [fired] = run.latency(0, 50)
    run.policy = policy()
    [resolved] = run.tick(15)
    assert resolved.resolved and resolved.labels == fired.labels


def test_severity_edit_while_firing_resolves_old_and_fires_new() -> None:
    run = Run(policy({**SLOW, "for": "0s"}))
    run.latency(0, 50)
    run.policy = policy({**SLOW, "for": "0s", "severity": "warning"})
    old, new = run.latency(15, 50)
    assert old.resolved and old.severity == "critical" and not new.resolved and new.severity == "warning"


ANOMALY = {"name": "queue-anomaly", "kind": "anomaly", "target": "generator", "signal": "queue", "threshold": 0.9,
           "summary": "unusual queue on {target}: {value}"}  # fmt: skip


def test_anomaly_rule_fires_on_score_and_keeps_firing_for_15_minutes() -> None:
    run = Run(policy(ANOMALY))
    key = ("generator", "queue")
    gen = {"generator": obs("generator", "queue", 1234.0)}
    assert run.tick(0, observations=gen, anomaly_scores={key: 0.5}) == []
    [a] = run.tick(15, observations=gen, anomaly_scores={key: 0.97})
    assert a.summary == "unusual queue on generator: 1234" and a.annotations["anomaly_score"] == "0.970"
    assert a.reasons == (Reason.anomaly,) and a.severity == "warning"
    for _ in range(59):  # scores drop right after a detection; the incident still lasts
        assert run.tick(15, observations=gen, anomaly_scores={key: 0.1}) == []
    [r] = run.tick(15, observations=gen, anomaly_scores={key: 0.1})
    assert r.resolved and run.now - T0 == timedelta(minutes=15, seconds=15)


def test_anomaly_rule_without_score_is_no_data() -> None:
    run = Run(policy(ANOMALY))
    assert run.tick(0, observations={"generator": obs("generator", "queue", 5.0)}) == []
    assert run.results["queue-anomaly"].state == "nodata"


BREACH = {"name": "queue-breach", "kind": "predicted_breach", "target": "generator", "signal": "queue",
          "threshold": 1800, "horizon": "60m", "severity": "critical"}  # fmt: skip


def path(*values: tuple[float, float]) -> list[Forecast]:
    return [Forecast("queue", v, 0.9, minutes * 60) for minutes, v in values]


@pytest.mark.parametrize(
    ("forecast", "fires", "breach_in"),
    [
        (path((15, 900), (30, 1500), (45, 1900), (60, 2500)), True, "45m"),
        (path((15, 900), (30, 1500), (60, 1700), (90, 5000)), False, None),  # beyond the horizon: not yet
        (path((60, 1801)), True, "60m"),
        ([], None, None),
    ],
)
def test_predicted_breach(forecast: list[Forecast], fires: bool | None, breach_in: str | None) -> None:
    run = Run(policy(BREACH))
    actions = run.tick(0, forecasts={("generator", "queue"): forecast})
    assert run.results["queue-breach"].condition is fires
    if fires:
        [a] = actions
        assert a.annotations["breach_in"] == breach_in and a.annotations["forecast_quantile"] == "p90"
        assert a.reasons == (Reason.predicted_breach,)
    else:
        assert actions == []


def test_link_annotation_with_external_url() -> None:
    run = Run(policy({**SLOW, "for": "0s"}, external_url="https://empire.example.com/"))
    [a] = run.latency(0, 50)
    assert a.annotations["link"] == "https://empire.example.com/alerts?target=api"


def scale_rule(**scale: Any) -> dict[str, Any]:
    return {**SLOW, "for": "0s", "remediation": {"scale": {"target": "api", **scale}}}


def test_scale_remediation_is_a_scale_action_with_reason_remediation() -> None:
    run = Run(policy(scale_rule(by=2)))
    _alert, scale = run.latency(0, 50, replicas=4)
    assert isinstance(scale, ScaleTo)
    assert (scale.target, scale.namespace, scale.workload_name, scale.current, scale.replicas) == (
        "api",
        "web",
        "api",
        4,
        6,
    )
    assert scale.reasons[0] == Reason.remediation and Reason.threshold in scale.reasons
    assert run.histories["api"].recommendations[-1] == (run.now, 6)  # the scale-down window will hold it
    assert run.latency(15, 50, replicas=6) == []  # once per episode
    [resolved] = run.latency(15, 1, replicas=6)  # nothing to undo: the scaler takes over
    assert resolved.resolved


@pytest.mark.parametrize(
    ("scale", "replicas", "expected", "reason"),
    [({"by": 20}, 4, 10, Reason.clamped_max), ({"replicas": 1}, 4, 2, Reason.clamped_min),
     ({"replicas": 7}, 4, 7, None)],
)  # fmt: skip
def test_scale_remediation_is_clamped(
    scale: dict[str, int], replicas: int, expected: int, reason: Reason | None
) -> None:
    run = Run(policy(scale_rule(**scale)))
    _, action = run.latency(0, 50, replicas=replicas)
    assert action.replicas == expected and (reason is None or reason in action.reasons)


def test_scale_remediation_starts_from_this_ticks_decision() -> None:
    run = Run(policy(scale_rule(by=2)))
    _, action = run.tick(0, observations={"api": obs("api", "latency", 50, replicas=4)}, desired={"api": 5})
    assert (action.current, action.replicas) == (5, 7)


def test_scale_remediation_respects_pins_and_pauses_and_unknown_replicas() -> None:
    run = Run(policy(scale_rule(by=2)))
    assert [type(a) for a in run.latency(0, 50, **{"empire.io/pin-replicas": "3"})] == [Alert]
    run = Run(policy(scale_rule(by=2)))
    _, action = run.latency(0, 50, **{"empire.io/paused": "true"})
    assert Reason.paused in action.reasons  # journaled, skipped by the runner
    run = Run(policy(scale_rule(by=2)))
    o = Observation("api", T0, (Sample("latency", 50, T0, 0.0),), None)
    assert [type(a) for a in run.tick(0, observations={"api": o})] == [Alert]


def test_pause_persona_and_drain_account_hold_while_firing() -> None:
    pause = {**SLOW, "for": "0s", "remediation": {"pause_persona": "luna"}}
    drain = {**SLOW, "name": "api-slow-2", "for": "0s",
             "remediation": {"drain_account": {"provider": "music", "account": "main-1"}}}  # fmt: skip
    run = Run(policy(pause, drain))
    fired = run.latency(0, 50)
    assert [type(a) for a in fired] == [Alert, PausePersona, Alert, DrainAccount]
    assert fired[1].paused and fired[1].subject == "persona/luna" and fired[1].reasons[0] == Reason.remediation
    assert fired[3].drained and fired[3].subject == "account/music/main-1"
    resolved = run.latency(15, 1)
    assert [type(a) for a in resolved] == [Alert, PausePersona, Alert, DrainAccount]
    assert not resolved[1].paused and not resolved[3].drained


def test_restore_state_after_restart_does_not_refire_and_still_resolves() -> None:
    pol = policy({**SLOW, "for": "0s", "remediation": {"pause_persona": "luna"}})
    run = Run(pol)
    [fired, _] = run.latency(0, 50)
    row = AlertInstance("fp", "api-slow", "critical", fired.labels, fired.annotations, T0, value=50)
    run2 = Run(pol)
    run2.state_ = restore_state(pol, [row], T0 + timedelta(minutes=1))
    assert run2.latency(60, 50) == []
    resolved = run2.latency(15, 1)
    assert [type(a) for a in resolved] == [Alert, PausePersona] and resolved[0].resolved


def test_evaluate_is_pure() -> None:
    pol = policy(SLOW, ANOMALY, BREACH)
    inputs: Mapping[str, Any] = {"observations": {"api": obs("api", "latency", 50)},
                                 "anomaly_scores": {("generator", "queue"): 0.95},
                                 "forecasts": {("generator", "queue"): path((30, 2000))}}  # fmt: skip
    from empire.agent.alerting.rules import evaluate as ev

    a = ev(pol, RuleInputs(**inputs), {}, T0)
    b = ev(pol, RuleInputs(**inputs), {}, T0)
    assert a == b and len(a.actions) == 2  # anomaly + breach fire at once; api-slow is pending
