"""What a real API server's validation does with an EmpireConfig: the CRD's OpenAPI schema and its
CEL rules (`x-kubernetes-validations`, run with cel-python, independent of the API server's cel-go).

kmock (the API mock the operator tests run against) validates nothing, so tests that claim "the API
server lets this through" check it here first: `admitted(spec)` is empty for a spec `kubectl apply`
would accept.
"""

from __future__ import annotations

from typing import Any

import celpy
from openapi_schema_validator import OAS30Validator

from empire.operator.crd import crd_manifest

__all__ = ["admitted", "cel_violations", "schema_errors", "spec_schema", "typed"]

ENV = celpy.Environment()


def _root() -> dict[str, Any]:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def spec_schema() -> dict[str, Any]:
    return _root()["properties"]["spec"]


def typed(value: Any, schema: dict[str, Any]) -> Any:
    """`value` as the API server hands it to CEL: `number` fields are doubles."""
    kind = schema.get("type")
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else {}
        return {k: typed(v, props.get(k, extra)) for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [typed(v, schema.get("items") or {}) for v in value]
    return value


def cel_violations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, message) of every rule that does not hold on `spec`, walking the document along the schema."""
    out: list[tuple[str, str]] = []

    def visit(value: Any, schema: dict[str, Any], path: str) -> None:
        for rule in schema.get("x-kubernetes-validations", ()):
            program = ENV.program(ENV.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(typed(value, schema))})
            if not isinstance(result, celpy.celtypes.BoolType) or not bool(result):
                out.append((path, rule["message"]))
        if isinstance(value, dict):
            for key, child in value.items():
                sub = (schema.get("properties") or {}).get(key)
                if sub is not None:
                    visit(child, sub, f"{path}.{key}")
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, child in enumerate(value):
                visit(child, schema["items"], f"{path}[{i}]")

    visit(spec, spec_schema(), "spec")
    return out


def schema_errors(spec: dict[str, Any]) -> list[tuple[str, str]]:
    found = OAS30Validator(_root()).iter_errors({"spec": spec})
    return [(".".join(str(p) for p in e.absolute_path), e.message) for e in found]


def admitted(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Why the API server would refuse `spec` (empty: it would store it)."""
    return schema_errors(spec) + cel_violations(spec)
