"""Every reference and cross-field error names its exact field path, its line, what is wrong and
the valid choices (with the nearest one, as unknown keys do).

Found by audit: an unknown route receiver was reported at `alerting` with the first line of the
file (`file:1: alerting: route names unknown receiver(s) dd (defined: d)`).
"""

from __future__ import annotations

from policy_text import MINIMAL_TARGET as TARGET
from policy_text import errors


def test_unknown_route_receiver_has_exact_path_line_suggestion_and_choices() -> None:
    text = """alerting:
  receivers: [{name: d, dashboard: {}}]
  route:
    receiver: d
    routes: [{receiver: dd}]
"""
    assert errors(text) == [
        "p.yaml:5: alerting.route.routes[0].receiver: unknown receiver 'dd'; did you mean 'd'? (valid: d)"
    ]


def test_every_unknown_receiver_in_a_nested_tree_is_reported_at_its_own_place() -> None:
    text = """alerting:
  receivers:
    - {name: slack-oncall, slack: {webhook_url: {env: HOOK}}}
    - {name: dashboard, dashboard: {}}
  route:
    receiver: dashbaord
    routes:
      - matchers: ['severity="critical"']
        receiver: slack-oncall
      - matchers: ['severity="warning"']
        routes:
          - matchers: ['target="api"']
            receiver: slack-oncal
          - receiver: pager
"""
    valid = "(valid: slack-oncall, dashboard)"
    assert errors(text) == [
        f"p.yaml:6: alerting.route.receiver: unknown receiver 'dashbaord'; did you mean 'dashboard'? {valid}",
        f"p.yaml:13: alerting.route.routes[1].routes[0].receiver: unknown receiver 'slack-oncal'; "
        f"did you mean 'slack-oncall'? {valid}",
        f"p.yaml:14: alerting.route.routes[1].routes[1].receiver: unknown receiver 'pager' {valid}",
    ]


def test_root_route_needs_a_receiver() -> None:
    text = """alerting:
  receivers: [{name: d, dashboard: {}}]
  route:
    group_wait: 10s
"""
    assert errors(text) == ["p.yaml:3: alerting.route.receiver: required at the root of the routing tree (valid: d)"]


def test_unknown_predictive_signal_is_reported_at_its_field() -> None:
    lines = errors(TARGET + "    predictive: {signal: cpuu}\n")
    assert lines == [
        "p.yaml:8: targets[0].predictive.signal: unknown signal 'cpuu' of this target; did you mean 'cpu'? (valid: cpu)"
    ]


def test_cross_field_target_errors_name_the_field() -> None:
    text = TARGET.replace("max_replicas: 10", "max_replicas: 10\n    pin_replicas: 11\n    fallback: {mode: fixed}")
    text += "      - {name: cpu, query: 'q', target: 1}\n"
    assert errors(text) == [
        "p.yaml:7: targets[0].fallback.replicas: required when mode is 'fixed'",
    ]
    text = text.replace("fallback: {mode: fixed}", "fallback: {mode: fixed, replicas: 20}")
    assert errors(text) == [
        "p.yaml:10: targets[0].signals[1].name: name 'cpu' is already used by signals[0]",
        "p.yaml:6: targets[0].pin_replicas: must lie within min_replicas..max_replicas (1..10)",
        "p.yaml:7: targets[0].fallback.replicas: must lie within min_replicas..max_replicas (1..10)",
    ]


def test_provider_errors_name_the_field() -> None:
    text = """providers:
  - name: music
    kind: http
    fallback: [music]
    accounts:
      - {name: a1}
      - {name: a1}
"""
    assert errors(text) == [
        "p.yaml:2: providers[0].http: required when kind is 'http' (submit_url, ...)",
        "p.yaml:7: providers[0].accounts[1].name: name 'a1' is already used by accounts[0]",
        "p.yaml:4: providers[0].fallback[0]: a provider cannot be its own fallback",
    ]


def test_remediation_references_suggest_the_nearest() -> None:
    text = (
        TARGET
        + """alerting:
  rules:
    - name: r1
      kind: threshold
      target: api
      signal: cpu
      threshold: 3
      remediation: {scale: {target: apj, by: 1}}
"""
    )
    assert errors(text) == [
        "p.yaml:15: alerting.rules[0].remediation.scale.target: unknown target 'apj'; did you mean 'api'? (valid: api)"
    ]
