"""A partial HPA `behavior` block takes each missing field from its own direction's defaults.

Kubernetes HPA v2 defaults field by field: `scaleDown: {stabilizationWindowSeconds: 60}` keeps
the scale-down select policy and rate policies. Before, a partial block was rejected ("policies
must not be empty", "stabilization_window: required field is missing").
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from empire.agent.stabilizing import TargetHistory, stabilize
from empire.agent.types import Reason, Recommendation
from empire.policies.errors import PolicyError
from empire.policies.loading import load_policy_text
from empire.policies.scaling import SelectPolicy, Target
from empire.policies.schema import parse_policy

HPA_DEFAULTS: dict[str, dict[str, Any]] = {
    "scale_up": {
        "stabilization_window": "0s",
        "select": "max",
        "policies": [{"type": "percent", "value": 100, "period": "15s"}, {"type": "pods", "value": 4, "period": "15s"}],
    },
    "scale_down": {
        "stabilization_window": "5m",
        "select": "max",
        "policies": [{"type": "percent", "value": 100, "period": "15s"}],
    },
}
EXPLICIT: dict[str, Any] = {  # differs from both directions' defaults in every field
    "stabilization_window": "45s",
    "select": "min",
    "policies": [{"type": "pods", "value": 2, "period": "30s"}],
}


def target_with(behavior: dict[str, Any]) -> Target:
    body = {
        "targets": [
            {
                "name": "api",
                "workload": {"name": "api"},
                "max_replicas": 50,
                "signals": [{"name": "cpu", "query": "q", "target": 0.5}],
                "behavior": behavior,
            }
        ]
    }
    return parse_policy(body).targets[0]


def dumped(target: Target) -> dict[str, Any]:
    return target.model_dump(mode="json")["behavior"]


SUBSETS = [s for n in range(4) for s in itertools.combinations(("stabilization_window", "select", "policies"), n)]


@pytest.mark.parametrize("direction", ["scale_up", "scale_down"])
@pytest.mark.parametrize("given", SUBSETS, ids=lambda s: "+".join(s) or "empty")
def test_each_missing_field_comes_from_its_directions_default(direction: str, given: tuple[str, ...]) -> None:
    block = {k: EXPLICIT[k] for k in given}
    got = dumped(target_with({direction: block}))
    expected = {k: (EXPLICIT[k] if k in given else HPA_DEFAULTS[direction][k]) for k in HPA_DEFAULTS[direction]}
    assert got[direction] == expected
    other = "scale_down" if direction == "scale_up" else "scale_up"
    assert got[other] == HPA_DEFAULTS[other]  # the other direction is untouched


def test_audit_examples_now_validate() -> None:
    down = target_with({"scale_down": {"stabilization_window": "60s"}}).behavior.scale_down
    assert down.stabilization_window == timedelta(seconds=60) and down.select == SelectPolicy.max
    assert [(p.type.value, p.value, p.period) for p in down.policies] == [("percent", 100, timedelta(seconds=15))]
    up = target_with({"scale_up": {"select": "max"}}).behavior.scale_up
    assert up.stabilization_window == timedelta(0)
    assert [(p.type.value, p.value) for p in up.policies] == [("percent", 100), ("pods", 4)]


def test_readme_snippet_validates() -> None:
    text = """
targets:
  - name: api
    workload: {name: api}
    max_replicas: 10
    signals: [{name: cpu, query: 'avg(cpu)', target: 0.7}]
    behavior: {scale_down: {stabilization_window: 180s}}
"""
    b = dumped(load_policy_text(text).policy.targets[0])
    assert b["scale_down"] == {**HPA_DEFAULTS["scale_down"], "stabilization_window": "3m"}
    assert b["scale_up"] == HPA_DEFAULTS["scale_up"]


def test_explicit_empty_policies_need_select_disabled() -> None:
    disabled = target_with({"scale_down": {"select": "disabled", "policies": []}}).behavior.scale_down
    assert disabled.policies == () and disabled.stabilization_window == timedelta(minutes=5)
    with pytest.raises(PolicyError) as info:
        target_with({"scale_down": {"policies": []}})
    assert str(info.value) == "targets[0].behavior.scale_down: policies must not be empty unless select is 'disabled'"


def test_window_limit_still_applies_to_a_partial_block() -> None:
    with pytest.raises(PolicyError, match=r"scale_up: stabilization_window must be at most 1h"):
        target_with({"scale_up": {"stabilization_window": "2h"}})


def test_effective_policy_of_a_partial_block_round_trips() -> None:
    t = target_with({"scale_up": {"select": "min"}, "scale_down": {"stabilization_window": "1m"}})
    again = Target.model_validate(t.model_dump(mode="json"))
    assert again == t


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_stabilizer_uses_the_filled_in_scale_down_rules() -> None:
    """A 60 s window from the partial block, then the default 100 %-per-15 s rate policy."""
    t = target_with({"scale_down": {"stabilization_window": "60s"}})
    hist = TargetHistory(recommendations=((NOW - timedelta(seconds=30), 10),))
    held = stabilize(t, Recommendation(target="api", at=NOW, current=10, replicas=2, reasons=()), hist, NOW)
    assert (held.desired, held.reasons) == (10, (Reason.stabilized_down,))
    later = NOW + timedelta(seconds=31)  # the 10 has left the 60 s window (not the default 5 m one)
    free = stabilize(t, Recommendation(target="api", at=later, current=10, replicas=2, reasons=()), hist, later)
    assert (free.desired, free.reasons) == (2, ())


def test_stabilizer_uses_the_filled_in_scale_up_rules() -> None:
    """`select: min` alone keeps the default policies: min(100 %, 4 pods) from 10 replicas is +4."""
    t = target_with({"scale_up": {"select": "min"}})
    out = stabilize(t, Recommendation(target="api", at=NOW, current=10, replicas=40, reasons=()), TargetHistory(), NOW)
    assert (out.desired, out.reasons) == (14, (Reason.rate_limited_up,))
