"""EmpireConfig spec -> policy, and which EmpireConfig is in force (pure)."""

from __future__ import annotations

import yaml

from empire.operator.spec import Candidate, ConfigRef, choose_active, parse_spec, plain
from empire.policies.loading import default_policy_path, load_policy
from empire.policies.schema import IDLE_POLICY, parse_policy, policy_version

REF = ConfigRef("empire", "main", 4)


def example() -> dict:
    return yaml.safe_load(default_policy_path().read_text())


def test_valid_spec_is_the_same_policy_as_the_yaml_file() -> None:
    result = parse_spec(example(), REF)
    from_file = load_policy(default_policy_path())
    assert result.ok and result.issues == ()
    assert result.version == from_file.version
    assert result.body == from_file.policy.model_dump(mode="json", by_alias=True)
    assert parse_policy(result.body) == result.policy  # the stored body parses back to the same policy


def test_invalid_spec_lists_every_field_path() -> None:
    spec = example()
    spec["targets"][0]["max_replicas"] = 0
    spec["personas"][0]["providers"] = ["musik"]
    spec["loop"]["intervall"] = "5s"
    result = parse_spec(spec, REF)
    assert not result.ok and result.policy is None and result.version is None
    paths = [i.path for i in result.issues]
    assert "targets[0].max_replicas" in paths
    assert "loop.intervall" in paths
    assert all(i.line is None for i in result.issues)  # a CR has no source text: paths, not lines
    lines = result.issue_lines()
    assert "loop.intervall: unknown key 'intervall'; did you mean 'interval'? valid keys: interval, dry_run" in lines


def test_reference_errors_come_once_the_shape_is_right() -> None:
    spec = example()
    spec["personas"][0]["providers"] = ["musik"]
    result = parse_spec(spec, REF)
    assert [i.path for i in result.issues] == ["personas[0].providers[0]"]
    assert "unknown provider 'musik'" in result.issues[0].message


def test_issue_lines_are_capped() -> None:
    spec = {"targets": [{"name": f"t{i}", "workload": {"name": "w"}, "max_replicas": 0, "signals": []}
                        for i in range(4)]}  # fmt: skip
    lines = parse_spec(spec, REF).issue_lines(limit=3)
    assert len(lines) == 4 and lines[-1].startswith("... and ") and lines[-1].endswith(" more")


def test_missing_or_empty_spec_is_the_idle_default_policy() -> None:
    for spec in (None, {}):
        result = parse_spec(spec, REF)
        assert result.ok and result.policy.targets == () and result.policy.personas == ()


def test_idle_policy_is_dry_run_with_nothing_to_act_on() -> None:
    idle = parse_spec(IDLE_POLICY, REF)
    assert idle.ok and idle.policy.loop.dry_run
    assert (idle.policy.targets, idle.policy.providers, idle.policy.personas) == ((), (), ())
    assert idle.version == policy_version(parse_policy(IDLE_POLICY))


def test_plain_copies_read_only_views_deeply() -> None:
    from types import MappingProxyType

    view = MappingProxyType({"a": MappingProxyType({"b": (1, 2)}), "c": [MappingProxyType({"d": None})]})
    assert plain(view) == {"a": {"b": [1, 2]}, "c": [{"d": None}]}
    assert type(plain(view)["a"]) is dict


def test_source_names_the_config_and_generation() -> None:
    assert REF.source() == "EmpireConfig empire/main generation 4"
    body = {"metadata": {"namespace": "ns", "name": "x", "generation": 7}}
    assert ConfigRef.from_body(body) == ConfigRef("ns", "x", 7)


def cand(name: str, created: str, ns: str = "empire", deleting: bool = False) -> Candidate:
    return Candidate(namespace=ns, name=name, created=created, deleting=deleting)


def test_oldest_config_is_in_force() -> None:
    a = cand("b-newer", "2026-01-02T00:00:00Z")
    b = cand("a-older", "2026-01-01T00:00:00Z")
    assert choose_active([a, b]) == b
    assert choose_active([b, a]) == b  # order of the index does not matter


def test_ties_break_on_namespace_then_name() -> None:
    same = "2026-01-01T00:00:00Z"
    assert choose_active([cand("b", same), cand("a", same)]).name == "a"
    assert choose_active([cand("a", same, ns="z"), cand("b", same, ns="m")]).namespace == "m"


def test_configs_being_deleted_or_excluded_never_win() -> None:
    old = cand("old", "2026-01-01T00:00:00Z", deleting=True)
    new = cand("new", "2026-02-01T00:00:00Z")
    assert choose_active([old, new]) == new
    assert choose_active([new], exclude=new.key) is None
    assert choose_active([]) is None


def test_candidate_from_body_keeps_what_a_hand_over_needs() -> None:
    body = {"metadata": {"namespace": "ns", "name": "x", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                         "deletionTimestamp": "2026-01-02T00:00:00Z"}, "spec": {"loop": {"dry_run": True}}}  # fmt: skip
    c = Candidate.from_body(body)
    assert (c.key, c.deleting, c.ref) == (("ns", "x"), True, ConfigRef("ns", "x", 3))
    assert c.spec_dict() == {"loop": {"dry_run": True}}
    assert hash(c) == hash(Candidate.from_body(body))  # kopf indexes need hashable values
