"""The policy schema: the shipped example passes, and every kind of mistake gets a precise message."""

from __future__ import annotations

from datetime import timedelta

from policy_text import MINIMAL_TARGET, errors

from empire.policies.loading import default_policy_path, load_policy, load_policy_text
from empire.policies.scaling import SEED_TARGETS, PredictiveMode, SelectPolicy, SignalType
from empire.policies.schema import parse_policy, policy_json_schema, policy_version


def test_shipped_example_is_valid_and_complete() -> None:
    loaded = load_policy(default_policy_path())
    p = loaded.policy
    assert [t.name for t in p.targets] == ["generator", "api"]
    assert {pr.name for pr in p.providers} == {"music-sim", "voice-sim"}
    assert [t.name for t in p.storage.tiers] == ["hot", "warm", "cold", "archive"]
    assert p.alerting.rules and p.personas
    # The runbook's seed thresholds are what the example uses.
    gen = p.target("generator")
    assert gen.signals[0].target == SEED_TARGETS["queue"]
    assert gen.signals[1].target == SEED_TARGETS["cpu"]
    api = p.target("api")
    assert [s.target for s in api.signals] == [
        SEED_TARGETS["cpu"],
        SEED_TARGETS["memory"],
        SEED_TARGETS["response_time"],
    ]


def test_defaults_mirror_hpa() -> None:
    p = load_policy_text(MINIMAL_TARGET).policy
    t = p.targets[0]
    assert t.tolerance == 0.1
    assert t.min_replicas == 1
    assert t.behavior.scale_down.stabilization_window == timedelta(seconds=300)
    assert t.behavior.scale_up.stabilization_window == timedelta(0)
    assert t.behavior.scale_up.select == SelectPolicy.max
    assert [(r.type.value, r.value, r.period.total_seconds()) for r in t.behavior.scale_up.policies] == [
        ("percent", 100, 15.0),
        ("pods", 4, 15.0),
    ]
    assert t.signals[0].type == SignalType.average
    assert t.predictive.mode == PredictiveMode.off
    assert t.workload.kind == "Deployment" and t.workload.namespace == "default"
    assert p.loop.interval == timedelta(seconds=15)


def test_empty_policy_is_valid() -> None:
    p = parse_policy({})
    assert p.targets == () and p.alerting.route.receiver == "dashboard"


def test_unknown_key_suggests_nearest_and_lists_valid_keys() -> None:
    lines = errors(MINIMAL_TARGET.replace("max_replicas: 10", "max_replicas: 10\n    behaviour: {}"))
    assert len(lines) == 1
    assert lines[0].startswith("p.yaml:6: targets[0].behaviour: unknown key 'behaviour'; did you mean 'behavior'?")
    assert "valid keys: name, workload, min_replicas" in lines[0]


def test_wrong_type_and_negative_replicas_name_the_path() -> None:
    text = MINIMAL_TARGET.replace("max_replicas: 10", "max_replicas: ten\n    min_replicas: -1")
    lines = errors(text)
    assert any(line.startswith("p.yaml:5: targets[0].max_replicas: ") and "integer" in line for line in lines)
    assert any("targets[0].min_replicas: " in line and "greater than or equal to 0" in line for line in lines)


def test_min_above_max_is_rejected() -> None:
    lines = errors(MINIMAL_TARGET.replace("max_replicas: 10", "max_replicas: 2\n    min_replicas: 5"))
    assert lines == ["p.yaml:6: targets[0].min_replicas: 5 is above max_replicas (2)"]


def test_bad_duration_explains_the_format() -> None:
    lines = errors("loop: {interval: 5 min}")
    assert lines == [
        "p.yaml:1: loop.interval: invalid duration '5 min': use a number with a unit, e.g. 30s, 5m, 1h, 1h30m, 7d "
        "(units: ms, s, m, h, d, w)"
    ]


def test_enum_error_lists_choices() -> None:
    lines = errors(MINIMAL_TARGET + "    predictive: {mode: always}\n")
    assert len(lines) == 1 and "targets[0].predictive.mode" in lines[0]
    assert "'off', 'forecast_only' or 'forecast_and_scale'" in lines[0]


def test_missing_receiver_and_provider_references() -> None:
    text = """
providers:
  - name: music
    accounts: [{name: a1}]
personas:
  - name: luna
    genres: [synthwave]
    providers: [music, musik]
alerting:
  route:
    receiver: dashboard
    routes: [{matchers: ['severity="critical"'], receiver: slack}]
"""
    lines = errors(text)
    # The exact path and line of the reference, what is wrong, the valid choices.
    assert "p.yaml:12: alerting.route.routes[0].receiver: unknown receiver 'slack' (valid: dashboard)" in lines


def test_persona_provider_reference_is_checked() -> None:
    text = """
providers:
  - name: music
    accounts: [{name: a1}]
personas:
  - name: luna
    genres: [synthwave]
    providers: [music, musik]
"""
    assert errors(text) == [
        "p.yaml:8: personas[0].providers[1]: unknown provider 'musik'; did you mean 'music'? (valid: music)"
    ]


def test_alert_rule_references_target_and_signal() -> None:
    text = (
        MINIMAL_TARGET
        + """
alerting:
  rules:
    - {name: r1, kind: threshold, target: api, signal: latency, threshold: 3}
    - {name: r2, kind: threshold, target: web, signal: cpu, threshold: 3}
"""
    )
    lines = errors(text)
    assert "alerting.rules[0].signal: unknown signal 'latency' of target 'api' (valid: cpu)" in lines[0]
    assert "alerting.rules[1].target: unknown target 'web' (valid: api)" in lines[1]


def test_duplicate_names_are_rejected() -> None:
    text = MINIMAL_TARGET + MINIMAL_TARGET.replace("targets:\n", "")
    assert errors(text) == ["p.yaml:9: targets[1].name: name 'api' is already used by targets[0]"]


def test_secret_reference_needs_exactly_one_source() -> None:
    text = """
providers:
  - name: music
    accounts: [{name: a1, api_key: {env: K, file: /k}}]
"""
    lines = errors(text)
    assert len(lines) == 1 and "providers[0].accounts[0].api_key" in lines[0]
    assert "exactly one of env, file, secret" in lines[0]


def test_secret_values_are_not_accepted_inline() -> None:
    text = """
providers:
  - name: music
    accounts: [{name: a1, api_key: sk-live-123}]
"""
    lines = errors(text)
    assert "providers[0].accounts[0].api_key" in lines[0]


def test_json_schema_exports_aliases_and_duration_strings() -> None:
    schema = policy_json_schema()
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert "continue" in defs["Route"]["properties"]
    assert "for" in defs["AlertRule"]["properties"]
    assert defs["LoopPolicy"]["properties"]["interval"]["type"] == "string"


def test_version_ignores_formatting_but_not_content() -> None:
    a = load_policy_text(MINIMAL_TARGET).policy
    b = load_policy_text(MINIMAL_TARGET.replace("max_replicas: 10", "max_replicas: 10   # comment")).policy
    c = load_policy_text(MINIMAL_TARGET.replace("max_replicas: 10", "max_replicas: 11")).policy
    assert policy_version(a) == policy_version(b) != policy_version(c)


def test_effective_policy_round_trips() -> None:
    p = load_policy(default_policy_path()).policy
    again = parse_policy(p.model_dump(mode="json", by_alias=True))
    assert again == p
