"""Server-side validation of an EmpireConfig: the CEL rules and list keys of the CRD. PURE.

Why: the API server can refuse a bad spec at `kubectl apply`, before the operator sees it. The
structural schema already checks types, ranges, patterns and enums; this module adds what only
a rule over several fields can say (`x-kubernetes-validations`, CEL): min_replicas <= max_replicas,
"exactly one of", and references between sections that CEL can afford to check (a persona's
providers, a provider's fallbacks, an alert rule's target). Names unique within a list are
`x-kubernetes-list-type: map` keys, which the API server enforces itself.

Everything else stays with the operator (`empire.operator.spec`, the same validation as
`empire policy validate`): references through nested alert routes, a rule's signal, durations in
range, local tier directories. So a typo there is reported on the EmpireConfig's status rather
than by `kubectl`.

Rules are written for what the API server stores, not for the policy model:

- optional fields are *absent*, never null (the CRD marks them non-nullable, so the API server
  prunes a `null` before validation), hence `has(...)` guards are enough;
- defaults are not applied by the API server (the CRD carries none), so a rule spells a default
  where it needs one (`min_replicas` is 1 when absent);
- each list iterated by a rule has a `maxItems` and each compared string a `maxLength` (from the
  policy model), which keeps the API server's cost estimate under its per-rule budget
  (`tests/unit/test_operator_crd_rules.py` bounds it).

Only `rule` and `message` are used (no `fieldPath`, `reason`, `messageExpression`), so the CRD
is valid for every Kubernetes version from 1.25 on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["LIST_KEYS", "RULES", "annotate", "rules_at"]

Rule = dict[str, str]


def _rule(rule: str, message: str) -> Rule:
    return {"rule": rule, "message": message}


def _exactly_one(*fields: str) -> Rule:
    flags = ", ".join(f"has(self.{f})" for f in fields)
    return _rule(f"[{flags}].filter(x, x).size() == 1", f"exactly one of {', '.join(fields)} must be set")


RULES: dict[str, tuple[Rule, ...]] = {
    "spec": (
        _rule(
            "!has(self.personas) || self.personas.all(p, p.providers.all(n, "
            "has(self.providers) && self.providers.exists(q, q.name == n)))",
            "personas[].providers must name providers defined in providers",
        ),
        _rule(
            "!has(self.providers) || self.providers.all(p, !has(p.fallback) || "
            "p.fallback.all(n, self.providers.exists(q, q.name == n)))",
            "providers[].fallback must name providers defined in providers",
        ),
        _rule(
            "!has(self.alerting) || !has(self.alerting.rules) || self.alerting.rules.all(r, "
            "has(self.targets) && self.targets.exists(t, t.name == r.target))",
            "alerting.rules[].target must name a target defined in targets",
        ),
    ),
    "spec.targets[]": (
        _rule(
            "(has(self.min_replicas) ? self.min_replicas : 1) <= self.max_replicas",
            "min_replicas (default 1) must not be above max_replicas",
        ),
        _rule(
            "!has(self.pin_replicas) || "
            "((has(self.min_replicas) ? self.min_replicas : 1) <= self.pin_replicas "
            "&& self.pin_replicas <= self.max_replicas)",
            "pin_replicas must lie within min_replicas..max_replicas",
        ),
        _rule(
            "!has(self.fallback) || !has(self.fallback.replicas) || "
            "((has(self.min_replicas) ? self.min_replicas : 1) <= self.fallback.replicas "
            "&& self.fallback.replicas <= self.max_replicas)",
            "fallback.replicas must lie within min_replicas..max_replicas",
        ),
        _rule(
            "!has(self.fallback) || !has(self.fallback.mode) || self.fallback.mode != 'fixed' "
            "|| has(self.fallback.replicas)",
            "fallback.replicas is required when fallback.mode is fixed",
        ),
        _rule(
            "!has(self.predictive) || !has(self.predictive.signal) || "
            "self.signals.exists(s, s.name == self.predictive.signal)",
            "predictive.signal must name one of this target's signals",
        ),
    ),
    "spec.targets[].behavior.scale_up": (
        _rule(
            "!has(self.policies) || self.policies.size() > 0 || (has(self.select) && self.select == 'disabled')",
            "policies must not be empty unless select is disabled",
        ),
    ),
    "spec.targets[].behavior.scale_down": (
        _rule(
            "!has(self.policies) || self.policies.size() > 0 || (has(self.select) && self.select == 'disabled')",
            "policies must not be empty unless select is disabled",
        ),
    ),
    "spec.providers[]": (
        _rule("!has(self.kind) || self.kind != 'http' || has(self.http)", "http is required when kind is http"),
        _rule("!has(self.fallback) || !(self.name in self.fallback)", "a provider cannot be its own fallback"),
    ),
    "spec.storage": (
        _rule("!has(self.backend) || self.backend != 's3' || has(self.s3)", "s3 is required when backend is s3"),
    ),
    "spec.alerting.receivers[]": (_exactly_one("slack", "email", "alertmanager", "dashboard"),),
    "spec.alerting.rules[]": (
        _rule(
            "self.kind != 'anomaly' || (self.threshold > 0.0 && self.threshold < 1.0)",
            "an anomaly rule's threshold is a score between 0 and 1 (exclusive)",
        ),
    ),
    "spec.alerting.rules[].remediation": (_exactly_one("scale", "pause_persona", "drain_account"),),
    "spec.alerting.rules[].remediation.scale": (_exactly_one("replicas", "by"),),
}
"""CEL rules by schema path (`[]` is a list's items). Secret references get theirs by shape (`annotate`)."""

LIST_KEYS: dict[str, str] = {
    "spec.targets": "name",
    "spec.targets[].signals": "name",
    "spec.providers": "name",
    "spec.providers[].accounts": "name",
    "spec.personas": "name",
    "spec.storage.tiers": "name",
    "spec.alerting.receivers": "name",
    "spec.alerting.rules": "name",
}
"""Lists whose items are unique by a key: the API server refuses a duplicate name itself."""

_SECRET_REF = frozenset({"env", "file", "secret"})


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}.*")


def annotate(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the rules and list keys to the structural schema of `spec` (in place; returned).

    Raises `KeyError` naming a path of `RULES`/`LIST_KEYS` the schema does not have, so a renamed
    policy field cannot silently drop a rule.
    """
    nodes = dict(_walk(spec, "spec"))
    for path in (*RULES, *LIST_KEYS):
        if path not in nodes:
            raise KeyError(f"CRD rule path {path!r} is not in the policy schema")
    for path, node in nodes.items():
        rules = list(RULES.get(path, ()))
        if set(node.get("properties") or {}) == _SECRET_REF:
            rules.append(_exactly_one("env", "file", "secret"))
        if rules:
            node["x-kubernetes-validations"] = rules
        if path in LIST_KEYS:
            key = LIST_KEYS[path]
            if key not in node["items"].get("required", ()):
                raise KeyError(f"{path}: list key {key!r} must be a required field of its items")
            node["x-kubernetes-list-type"] = "map"
            node["x-kubernetes-list-map-keys"] = [key]
    return spec


def rules_at(spec: dict[str, Any]) -> Iterator[tuple[str, Rule]]:
    """Every (path, rule) of an annotated schema, for tests and documentation."""
    for path, node in _walk(spec, "spec"):
        for rule in node.get("x-kubernetes-validations", ()):
            yield path, rule
