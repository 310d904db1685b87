"""The EmpireConfig status: conditions, the agent's decisions, and the Events they imply (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml

from empire.agent.records import DecisionRecord
from empire.operator.spec import Candidate, ConfigRef, parse_spec
from empire.operator.status import (
    agent_status,
    applied_status,
    condition,
    events_between,
    inactive_status,
    invalid_status,
    paused_condition,
    stall_after,
    unavailable_status,
)
from empire.policies.loading import default_policy_path
from empire.policies.schema import parse_policy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REF = ConfigRef("empire", "main", 2)


def example() -> dict:
    return yaml.safe_load(default_policy_path().read_text())


def cond(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


def decision(target: str, reasons: tuple[str, ...], age: float = 5, version: str | None = "v1") -> DecisionRecord:
    return DecisionRecord(target=target, at=NOW - timedelta(seconds=age), current=3, recommended=5, desired=4,
                          reasons=reasons, policy_version=version, replica="pod-a")  # fmt: skip


def test_applied_status_reports_version_counts_and_conditions() -> None:
    result = parse_spec(example(), REF)
    st = applied_status(result, None, NOW, changed=True)
    assert st["observedGeneration"] == st["appliedGeneration"] == 2
    assert st["appliedVersion"] == result.version and st["appliedAt"] == "2026-03-01T12:00:00Z"
    assert (st["targetCount"], st["personaCount"], st["providerCount"], st["issues"]) == (2, 2, 2, [])
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "Applied", 2)
    assert result.version in ready["message"]
    assert [c["type"] for c in st["conditions"]] == ["Ready", "Paused"]


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = condition("Ready", "True", "Applied", "v1", 1, NOW)
    later = NOW + timedelta(hours=1)
    same = condition("Ready", "True", "Applied", "v2 now", 2, later, {"conditions": [first]})
    assert same["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    flipped = condition("Ready", "False", "InvalidSpec", "x", 3, later, {"conditions": [same]})
    assert flipped["lastTransitionTime"] == "2026-03-01T13:00:00Z"


def test_unchanged_spec_yields_an_equal_status() -> None:
    result = parse_spec(example(), REF)
    first = applied_status(result, None, NOW, changed=True)
    again = applied_status(result, first, NOW + timedelta(hours=2), changed=False)
    assert again == first  # so the handler writes nothing


def test_invalid_status_names_the_paths_and_keeps_the_applied_version() -> None:
    good = applied_status(parse_spec(example(), ConfigRef("empire", "main", 1)), None, NOW, changed=True)
    spec = example()
    spec["targets"][0]["max_replicas"] = 0
    bad = parse_spec(spec, REF)
    st = invalid_status(bad, good, NOW)
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("targets[0].max_replicas: Input should be greater than or equal to 1")
    assert ready["message"].endswith(f"policy version {good['appliedVersion']} stays in force")
    assert st["issues"][0]["path"] == "targets[0].max_replicas"
    assert st["observedGeneration"] == 2
    assert "appliedVersion" not in st and "appliedGeneration" not in st  # nothing about the DB changes
    assert cond({"conditions": _merged(good, st)}, "Paused") == cond(good, "Paused")  # the running policy's


def _merged(old: dict, new: dict) -> list[dict]:
    return new["conditions"] if "conditions" in new else old["conditions"]


def test_invalid_without_any_applied_policy_says_so() -> None:
    bad = parse_spec({"loop": {"interval": "soon"}}, REF)
    assert cond(invalid_status(bad, None, NOW), "Ready")["message"].endswith("no policy applied from this EmpireConfig")


def test_inactive_and_unavailable() -> None:
    other = Candidate("empire", "first", "2026-01-01T00:00:00Z")
    ready = cond(inactive_status(REF, other, None, NOW), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NotActive")
    assert ready["message"].startswith("EmpireConfig empire/first is in force")
    down = cond(unavailable_status(REF, "database unreachable", None, NOW), "Ready")
    assert (down["status"], down["reason"]) == ("Unknown", "StateUnavailable")


def test_paused_condition() -> None:
    policy = parse_policy(example())
    assert paused_condition(policy) == ("False", "Active", "nothing is paused")
    spec = example()
    spec["loop"]["dry_run"] = True
    assert paused_condition(parse_policy(spec))[:2] == ("True", "DryRun")
    spec = example()
    spec["targets"][0]["paused"] = True
    spec["personas"][1]["paused"] = True
    assert paused_condition(parse_policy(spec)) == (
        "False", "SomeTargetsPaused", "paused: targets generator; personas grit-city")  # fmt: skip
    spec["targets"][1]["paused"] = True
    assert paused_condition(parse_policy(spec))[:2] == ("True", "AllTargetsPaused")


def degraded(policy, latest, previous=None) -> dict:
    return cond(agent_status(policy, latest, previous or {}, NOW, 2), "Degraded")


def test_degraded_from_the_agents_decisions() -> None:
    policy = parse_policy(example())
    assert degraded(policy, {})["reason"] == "AwaitingAgent"
    healthy = {"generator": decision("generator", ("above_target",)), "api": decision("api", ("within_tolerance",))}
    d = degraded(policy, healthy)
    assert (d["status"], d["reason"]) == ("False", "Healthy")
    sick = {**healthy, "api": decision("api", ("metrics_unavailable", "fallback_fixed"))}
    d = degraded(policy, sick)
    assert (d["status"], d["reason"], d["message"]) == (
        "True",
        "TargetsDegraded",
        "api: metrics_unavailable, fallback_fixed",
    )
    half = {"generator": healthy["generator"]}
    assert degraded(policy, half)["message"] == "no decision recorded yet for api"


def test_stalled_agent_and_policy_not_adopted() -> None:
    policy = parse_policy(example())
    limit = stall_after(policy)
    assert limit == timedelta(minutes=1)  # 3 x 15 s is less than the one-minute floor
    old = {n: decision(n, ("no_change",), age=limit.total_seconds() + 1) for n in ("generator", "api")}
    d = degraded(policy, old)
    assert (d["status"], d["reason"]) == ("True", "AgentStalled")
    assert "2026-03-01T11:58:59Z" in d["message"]
    fresh = {n: decision(n, ("no_change",), version="old") for n in ("generator", "api")}
    applied_long_ago = {"appliedVersion": "new", "appliedAt": "2026-03-01T11:00:00Z"}
    assert degraded(policy, fresh, applied_long_ago)["reason"] == "PolicyNotAdopted"
    applied_just_now = {"appliedVersion": "new", "appliedAt": "2026-03-01T11:59:50Z"}
    assert degraded(policy, fresh, applied_just_now)["reason"] == "Healthy"  # give the agent a few ticks


def test_no_targets_is_not_degraded() -> None:
    d = degraded(parse_policy({}), {})
    assert (d["status"], d["reason"]) == ("False", "NoTargets")


def test_decisions_reach_the_status_in_policy_order() -> None:
    policy = parse_policy(example())
    st = agent_status(policy, {"api": decision("api", ("above_target", "clamped_max"))}, {}, NOW, 2)
    assert [t["name"] for t in st["targets"]] == ["generator", "api"]
    assert st["targets"][0]["desired"] is None and st["targets"][0]["decidedAt"] is None
    assert st["targets"][1] == {"name": "api", "current": 3, "recommended": 5, "desired": 4,
                                "reasons": ["above_target", "clamped_max"], "decidedAt": "2026-03-01T11:59:55Z",
                                "policyVersion": "v1", "dryRun": False}  # fmt: skip
    assert st["agentPolicyVersion"] == "v1"


def test_events_on_transitions_only() -> None:
    good = applied_status(parse_spec(example(), REF), None, NOW, changed=True)
    assert events_between(None, good["conditions"]) == []  # Ready=True has its own PolicyApplied event
    bad = invalid_status(parse_spec({"loop": {"interval": "x"}}, REF), good, NOW)
    [(kind, reason, message)] = events_between(good, bad["conditions"])
    assert (kind, reason) == ("Warning", "InvalidSpec") and "loop.interval" in message
    assert events_between(bad, bad["conditions"]) == []  # a timer refresh: nothing new
    again = invalid_status(parse_spec({"loop": {"interval": "y"}}, ConfigRef("empire", "main", 3)), bad, NOW)
    assert [e[1] for e in events_between(bad, again["conditions"])] == ["InvalidSpec"]  # a new bad edit


def test_degraded_events_warn_and_recover() -> None:
    policy = parse_policy(example())
    ok = {n: decision(n, ("no_change",)) for n in ("generator", "api")}
    sick = {**ok, "api": decision("api", ("execution_failed",))}
    healthy = agent_status(policy, ok, {}, NOW, 2)
    assert events_between({}, healthy["conditions"]) == []
    ill = agent_status(policy, sick, healthy, NOW, 2)
    assert events_between(healthy, ill["conditions"]) == [("Warning", "TargetsDegraded", "api: execution_failed")]
    back = agent_status(policy, ok, ill, NOW, 2)
    [(kind, reason, _)] = events_between(ill, back["conditions"])
    assert (kind, reason) == ("Normal", "Recovered")


def test_dry_run_gets_an_event() -> None:
    spec = example()
    spec["loop"]["dry_run"] = True
    st = applied_status(parse_spec(spec, REF), None, NOW, changed=True)
    assert [(k, r) for k, r, _ in events_between(None, st["conditions"])] == [("Normal", "DryRun")]
