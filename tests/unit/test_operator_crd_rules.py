"""The CRD's CEL rules (`x-kubernetes-validations`): they compile, they accept the example policy,
they refuse what the operator refuses, and their cost stays inside the API server's budget.

The rules run here with cel-python, a CEL implementation independent of the API server's cel-go:
a typo or a wrong field name in a rule fails this test, not a user's `kubectl apply`. Each rule is
evaluated on the node it is attached to (`self`), with numbers typed as the schema types them (an
integral `threshold: 1` is a double to the API server too).
"""

from __future__ import annotations

import re
from typing import Any

import celpy
import pytest
import yaml

from empire.operator.crdrules import LIST_KEYS, RULES, rules_at
from empire.operator.spec import ConfigRef, parse_spec
from empire.policies.loading import default_policy_path
from fakes.admission import ENV, spec_schema
from fakes.admission import cel_violations as violations

PER_RULE_BUDGET = 10_000_000  # apiextensions StaticEstimatedCostLimit: one rule's estimated cost
CRD_BUDGET = 100_000_000  # StaticEstimatedCRDCostLimit: every rule times the lists it runs in
STEP_COST = 20  # an upper bound on one iteration: field selections and a <= 63-character comparison


def example() -> dict[str, Any]:
    return yaml.safe_load(default_policy_path().read_text())


def test_every_rule_compiles() -> None:
    rules = list(rules_at(spec_schema()))
    assert len(rules) >= len(RULES)
    for path, rule in rules:
        try:
            ENV.compile(rule["rule"])
        except celpy.CELParseError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{path}: {rule['rule']!r} does not compile: {exc}")
        assert set(rule) == {"rule", "message"}, "fieldPath/reason need Kubernetes 1.28+: keep 1.25+"


def test_the_example_policy_and_an_empty_spec_pass_every_rule() -> None:
    assert violations(example()) == []
    assert violations({}) == []


def _target(**fields: Any) -> dict[str, Any]:
    base = {"name": "api", "workload": {"name": "api"}, "max_replicas": 5,
            "signals": [{"name": "cpu", "query": "x", "target": 0.7}]}  # fmt: skip
    return base | fields


def _provider(**fields: Any) -> dict[str, Any]:
    return {"name": "music", "accounts": [{"name": "a"}]} | fields


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("min above max", {"targets": [_target(min_replicas=6)]}, "spec.targets[0]"),
    ("min defaults to 1", {"targets": [_target(max_replicas=1, pin_replicas=0)]}, "spec.targets[0]"),
    ("pin above max", {"targets": [_target(pin_replicas=9)]}, "spec.targets[0]"),
    ("fixed fallback without replicas", {"targets": [_target(fallback={"mode": "fixed"})]}, "spec.targets[0]"),
    ("fallback replicas out of range", {"targets": [_target(fallback={"mode": "fixed", "replicas": 9})]},
     "spec.targets[0]"),
    ("predictive signal unknown", {"targets": [_target(predictive={"signal": "qeue"})]}, "spec.targets[0]"),
    ("empty rate policies", {"targets": [_target(behavior={"scale_up": {"policies": []}})]},
     "spec.targets[0].behavior.scale_up"),
    ("http provider without http", {"providers": [_provider(kind="http")]}, "spec.providers[0]"),
    ("own fallback", {"providers": [_provider(fallback=["music"])]}, "spec.providers[0]"),
    ("unknown fallback", {"providers": [_provider(fallback=["voice"])]}, "spec"),
    ("persona names an unknown provider",
     {"providers": [_provider()], "personas": [{"name": "nova", "genres": ["pop"], "providers": ["musik"]}]}, "spec"),
    ("persona without any provider defined",
     {"personas": [{"name": "nova", "genres": ["pop"], "providers": ["music"]}]}, "spec"),
    ("alert rule names an unknown target",
     {"targets": [_target()], "alerting": {"rules": [{"name": "r", "kind": "threshold", "target": "apl",
                                                      "signal": "cpu", "threshold": 5}]}}, "spec"),
    ("anomaly threshold 1", {"targets": [_target()], "alerting": {"rules": [
        {"name": "r", "kind": "anomaly", "target": "api", "signal": "cpu", "threshold": 1}]}},
     "spec.alerting.rules[0]"),
    ("receiver of two kinds", {"alerting": {"receivers": [
        {"name": "x", "dashboard": {}, "slack": {"webhook_url": {"env": "HOOK"}}}]}}, "spec.alerting.receivers[0]"),
    ("receiver of no kind", {"alerting": {"receivers": [{"name": "x"}]}}, "spec.alerting.receivers[0]"),
    ("secret reference of two kinds", {"providers": [_provider(accounts=[
        {"name": "a", "api_key": {"env": "K", "file": "/k"}}])]}, "spec.providers[0].accounts[0].api_key"),
    ("remediation of two kinds", {"targets": [_target()], "personas": [], "alerting": {"rules": [
        {"name": "r", "kind": "threshold", "target": "api", "signal": "cpu", "threshold": 5,
         "remediation": {"scale": {"target": "api", "by": 1}, "pause_persona": "nova"}}]}},
     "spec.alerting.rules[0].remediation"),
    ("scale remediation with replicas and by", {"targets": [_target()], "alerting": {"rules": [
        {"name": "r", "kind": "threshold", "target": "api", "signal": "cpu", "threshold": 5,
         "remediation": {"scale": {"target": "api", "by": 1, "replicas": 2}}}]}},
     "spec.alerting.rules[0].remediation.scale"),
    ("s3 backend without s3", {"storage": {"backend": "s3"}}, "spec.storage"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "spec", "path"), BAD, ids=[b[0] for b in BAD])
def test_a_rule_refuses_what_the_operator_refuses(case: str, spec: dict[str, Any], path: str) -> None:
    assert path in [p for p, _ in violations(spec)], case
    assert not parse_spec(spec, ConfigRef("ns", "x")).ok, "the operator must refuse it too"


def test_the_good_twin_of_each_reference_rule_passes() -> None:
    ok = {
        "targets": [_target(min_replicas=0, pin_replicas=0, predictive={"signal": "cpu"},
                            fallback={"mode": "fixed", "replicas": 2})],
        "providers": [_provider(fallback=["voice"]), _provider(name="voice")],
        "personas": [{"name": "nova", "genres": ["pop"], "providers": ["voice", "music"]}],
        "alerting": {"rules": [{"name": "r", "kind": "anomaly", "target": "api", "signal": "cpu", "threshold": 0.5}]},
    }  # fmt: skip
    assert violations(ok) == []
    assert parse_spec(ok, ConfigRef("ns", "x")).ok


def test_named_lists_are_maps_keyed_by_a_required_name() -> None:
    nodes = {p: n for p, n in _nodes(spec_schema(), "spec")}
    for path, key in LIST_KEYS.items():
        node = nodes[path]
        assert node["x-kubernetes-list-type"] == "map" and node["x-kubernetes-list-map-keys"] == [key]
        assert key in node["items"]["required"]
    twice = {"targets": [_target(), _target()]}
    assert not parse_spec(twice, ConfigRef("ns", "x")).ok  # the operator agrees: names are unique


def _nodes(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for k, v in (node.get("properties") or {}).items():
        out += _nodes(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        out += _nodes(node["items"], f"{path}[]")
    return out


MACRO = re.compile(r"([a-z_]\w*(?:\.\w+)*)\.(all|exists_one|exists|filter|map)\((\w+),")
IN_LIST = re.compile(r"\bin\s+([a-z_]\w*(?:\.\w+)+)")


def estimated_cost(rule: str, path: str, nodes: dict[str, dict[str, Any]]) -> int:
    """An upper bound on the cost of one evaluation: the product of the maxItems of every list the
    rule iterates (nested or not), times `STEP_COST`. Variables bound by a macro are resolved to
    their list's item path, so `p.providers` inside `self.personas.all(p, ...)` is the persona's list."""
    bound = {"self": path}
    total = STEP_COST
    for chain, _macro, var in MACRO.findall(rule) + [(c, "in", "") for c in IN_LIST.findall(rule)]:
        head, *rest = chain.split(".")
        list_path = ".".join([bound[head], *rest])
        node = nodes[list_path]
        assert node.get("type") == "array" and "maxItems" in node, f"{path}: {list_path} needs maxItems"
        total *= node["maxItems"]
        if var:
            bound[var] = list_path + "[]"
    return total


def test_rule_costs_stay_inside_the_api_servers_budget() -> None:
    nodes = dict(_nodes(spec_schema(), "spec"))
    crd_total = 0
    for path, rule in rules_at(spec_schema()):
        cost = estimated_cost(rule["rule"], path, nodes)
        assert cost <= PER_RULE_BUDGET, f"{path}: {rule['rule']} may cost {cost:,}"
        runs = 1  # how often the rule runs: once per item of every list above it
        for i in range(len(path)):
            if path[i:].startswith("[]"):
                runs *= nodes[path[:i]]["maxItems"]
        crd_total += cost * runs
    assert crd_total <= CRD_BUDGET, f"all rules together may cost {crd_total:,}"
    for prop in ("name",):  # names compared by the rules are bounded
        assert nodes["spec.targets[]"]["properties"][prop]["maxLength"] == 63
