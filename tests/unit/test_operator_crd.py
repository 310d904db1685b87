"""The EmpireConfig CRD: generated from the policy schema, structural, and shipped up to date (pure)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from empire.operator.crd import (
    MAX_RECURSION,
    SchemaConversionError,
    crd_manifest,
    crd_yaml,
    example_config_yaml,
    structural_schema,
)
from empire.operator.spec import ConfigRef, parse_spec
from empire.operator.status import agent_status, applied_status
from empire.policies.loading import default_policy_path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NOW_ISO = "2026-03-01T12:00:00Z"
# The keywords a structural schema may carry (apiextensions.k8s.io/v1 JSONSchemaProps, minus the
# ones empire never needs); anything else in the generated schema is a conversion bug.
ALLOWED = {
    "type", "description", "format", "pattern", "enum", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "multipleOf",
    "properties", "required", "items", "additionalProperties", "nullable", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "minProperties", "maxProperties",
    "x-kubernetes-validations",
}  # fmt: skip


def schema() -> dict[str, Any]:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def example_spec() -> dict[str, Any]:
    return yaml.safe_load(default_policy_path().read_text())


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for k, v in (node.get("properties") or {}).items():
        out += walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}.*")
    return out


def errors(instance: dict[str, Any]) -> list[tuple[str, str]]:
    found = OAS30Validator(schema()).iter_errors(instance)
    return [(".".join(str(p) for p in e.absolute_path), e.message) for e in found]


def test_deploy_crd_is_up_to_date() -> None:
    assert (DEPLOY / "crds" / "empireconfigs.yaml").read_text() == crd_yaml(), (
        "deploy/crds/empireconfigs.yaml is stale: the policy schema changed. Regenerate: empire operator crd > deploy/crds/empireconfigs.yaml"
    )


def test_deploy_example_config_is_up_to_date_and_is_the_shipped_policy() -> None:
    text = (DEPLOY / "empireconfig.yaml").read_text()
    assert text == example_config_yaml(), "regenerate: empire operator example > deploy/empireconfig.yaml"
    doc = yaml.safe_load(text)
    assert doc["spec"] == example_spec()
    assert (doc["apiVersion"], doc["kind"]) == ("empire.io/v1alpha1", "EmpireConfig")


def test_crd_names_scope_and_columns() -> None:
    crd = crd_manifest()
    assert crd["metadata"]["name"] == "empireconfigs.empire.io"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("empire.io", "Namespaced", "EmpireConfig")
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns)[:4] == ["Ready", "Degraded", "Paused", "Targets"] and list(columns)[-1] == "Age"
    assert [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")] == [
        "Ready", "Degraded", "Paused", "Targets", "Age"]  # fmt: skip
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    status_props = schema()["properties"]["status"]["properties"]
    for c in columns.values():  # every column points at a field the status schema declares
        field = c["jsonPath"].split(".")[2].split("[")[0] if c["jsonPath"].startswith(".status.") else None
        assert field is None or field in status_props, c


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert set(node) <= ALLOWED, f"{path}: unexpected keywords {set(node) - ALLOWED}"
        free_form = node.get("x-kubernetes-preserve-unknown-fields") is True
        assert "type" in node or free_form, f"{path}: structural schemas need a type"
        assert not ("properties" in node and "additionalProperties" in node), path
        for flag in ("exclusiveMinimum", "exclusiveMaximum", "nullable"):
            assert flag not in node or isinstance(node[flag], bool), f"{path}.{flag} must be a boolean (OpenAPI 3.0)"
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{path}: arrays need items"
        if "required" in node:
            assert set(node["required"]) <= set(node.get("properties") or {}), path


def test_optional_fields_are_not_nullable_and_free_form_maps_preserved() -> None:
    """An optional field (default None) is not nullable: the API server prunes a null there, which
    means what omitting it means, so the CEL rules can rely on has()."""
    spec = schema()["properties"]["spec"]
    target = spec["properties"]["targets"]["items"]
    assert target["properties"]["pin_replicas"] == {
        "description": "hold exactly this many replicas", "type": "integer", "minimum": 0}  # fmt: skip
    assert target["required"] == ["name", "workload", "max_replicas", "signals"]
    http = spec["properties"]["providers"]["items"]["properties"]["http"]
    assert "nullable" not in http and http["type"] == "object"
    assert not [p for p, n in walk(spec) if n.get("nullable")]
    assert http["properties"]["body_template"]["x-kubernetes-preserve-unknown-fields"] is True
    tolerance = target["properties"]["tolerance"]
    assert (tolerance["minimum"], tolerance["maximum"], tolerance["exclusiveMaximum"]) == (0, 1, True)
    labels = spec["properties"]["alerting"]["properties"]["rules"]["items"]["properties"]["labels"]
    assert labels["type"] == "object" and labels["additionalProperties"] == {"type": "string"}
    assert not [p for p, n in walk(spec) if "default" in n]  # empire fills defaults when it parses the spec


def test_recursive_routes_are_typed_a_few_levels_deep_then_free_form() -> None:
    route = schema()["properties"]["spec"]["properties"]["alerting"]["properties"]["route"]
    depth = 0
    while "properties" in route:
        depth += 1
        route = route["properties"]["routes"]["items"]
    assert depth == MAX_RECURSION
    assert route["x-kubernetes-preserve-unknown-fields"] is True


def test_the_example_policy_is_a_valid_cr() -> None:
    assert errors({"apiVersion": "empire.io/v1alpha1", "kind": "EmpireConfig", "spec": example_spec()}) == []
    assert errors({"spec": {}}) == []  # an empty spec is the idle default


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda s: s["loop"].update(interval="5 min"), "spec.loop.interval"),
        (lambda s: s["targets"][0].update(max_replicas="ten"), "spec.targets.0.max_replicas"),
        (lambda s: s["targets"][0]["workload"].update(kind="cronjob"), "spec.targets.0.workload.kind"),
        (lambda s: s["targets"][0].pop("signals"), "spec.targets.0"),
        (lambda s: s["targets"][0].update(tolerance=1), "spec.targets.0.tolerance"),
        (lambda s: s["targets"][0].update(name="Generator"), "spec.targets.0.name"),
    ],
)
def test_the_api_server_rejects_what_the_policy_parser_rejects(edit: Any, path: str) -> None:
    spec = example_spec()
    edit(spec)
    assert path in [p for p, _ in errors({"spec": spec})]
    assert not parse_spec(spec, ConfigRef("ns", "x")).ok


def test_status_written_by_the_operator_fits_the_status_schema() -> None:
    from datetime import UTC, datetime

    from empire.agent.records import DecisionRecord

    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    result = parse_spec(example_spec(), ConfigRef("empire", "main", 1))
    st = applied_status(result, None, now, changed=True)
    d = DecisionRecord(target="api", at=now, current=2, recommended=3, desired=3, reasons=("above_target",))
    st |= agent_status(result.policy, {"api": d}, st, now, 1)
    st["kopf"] = {"progress": {}}  # kopf may keep its own keys: preserved
    assert errors({"spec": {}, "status": st}) == []


def test_unsupported_json_schema_constructs_fail_loudly() -> None:
    with pytest.raises(SchemaConversionError, match="oneOf"):
        structural_schema({"type": "object", "properties": {"x": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}})
    with pytest.raises(SchemaConversionError, match="anyOf"):
        structural_schema({"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}})
    with pytest.raises(SchemaConversionError, match="unresolved"):
        structural_schema({"$ref": "#/$defs/Nope", "$defs": {}})


def test_const_and_nullable_enum_conversion() -> None:
    enum = {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]}
    out = structural_schema({"type": "object", "properties": {"k": {"const": "x"}, "e": enum,
                                                              "o": {**enum, "default": None}}})  # fmt: skip
    assert out["properties"]["k"] == {"enum": ["x"], "type": "string"}
    assert out["properties"]["e"] == {"enum": ["a", "b", None], "type": "string", "nullable": True}  # null != omitted
    assert out["properties"]["o"] == {"enum": ["a", "b"], "type": "string"}  # null == omitted: pruned


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    """`kubectl explain empireconfig.spec...` shows the description of every field, spec and status."""
    root = schema()
    missing = [p for p, n in walk(root) if p and not p.endswith(("[]", ".*")) and not n.get("description")]
    assert missing == []
    leaves = [p for p, n in walk(root) if "properties" not in n and "items" not in n]
    assert len(leaves) > 200  # the walk reached every leaf
    spec = root["properties"]["spec"]["properties"]["targets"]
    assert "never fewer replicas" in spec["items"]["properties"]["min_replicas"]["description"]


def test_cli_prints_and_checks_the_crd(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "empire", "operator", "crd"]
    printed = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert printed == crd_yaml()
    assert (
        subprocess.run([*run, "--check", str(DEPLOY / "crds" / "empireconfigs.yaml")], capture_output=True).returncode
        == 0
    )
    stale = tmp_path / "crd.yaml"
    stale.write_text(printed.replace("empireconfigs", "oldconfigs", 1))
    res = subprocess.run([*run, "--check", str(stale)], capture_output=True, text=True)
    assert res.returncode == 1 and "out of date" in res.stderr


def test_generation_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()
    assert crd_manifest() == copy.deepcopy(crd_manifest())
