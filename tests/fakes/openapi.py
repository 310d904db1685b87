"""Checking HTTP exchanges against the agent's OpenAPI document (`/v1/openapi.json`).

`Document.check(method, path, status, body)` fails unless the document lists that status for the
operation the path matches and the body validates against the schema it gives (JSON Schema 2020-12,
formats checked). `conforming(doc)` is an httpx response hook that checks every response a test
client receives, so the scenario tests double as contract tests of the document.

`values(schema, components)` is a hypothesis strategy for JSON values valid under a schema of the
kinds pydantic writes (objects with properties, required and additionalProperties, strings with
lengths and date-time format, bounded numbers, enums, const, anyOf, arrays, $ref). Why not
hypothesis-jsonschema: its object generator relies on hypothesis internals that the hypothesis
in use no longer has (AttributeError on every object schema); this subset is all the document uses,
and a schema keyword it does not know fails loudly here instead of generating wrong values."""

from __future__ import annotations

import json
import re
from datetime import UTC
from typing import Any

import httpx
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

__all__ = ["Document", "conforming", "values"]

_KNOWN = {"type", "properties", "required", "additionalProperties", "minLength", "maxLength", "format", "minimum",
          "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "anyOf", "items", "minItems",
          "maxItems", "$ref", "title", "description", "default", "examples"}  # fmt: skip


def values(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    unknown = set(schema) - _KNOWN
    assert not unknown, f"schema keywords this generator does not know: {unknown}"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: values(components["schemas"][name], components))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([values(s, components) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind is None:  # any JSON value
        return st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if kind == "integer":
            return st.integers(None if low is None else int(low) + ("exclusiveMinimum" in schema),
                               None if high is None else int(high) - ("exclusiveMaximum" in schema))  # fmt: skip
        return st.floats(low, high, allow_nan=False, allow_infinity=False,
                         exclude_min="exclusiveMinimum" in schema, exclude_max="exclusiveMaximum" in schema)  # fmt: skip
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 30), 30))
    if kind == "array":
        return st.lists(values(schema.get("items", {}), components), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))  # fmt: skip
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        base = st.fixed_dictionaries({k: values(v, components) for k, v in props.items() if k in required},
                                     optional={k: values(v, components) for k, v in props.items() if k not in required})  # fmt: skip
        extra = schema.get("additionalProperties", True)
        if extra is False:
            return base
        more = st.dictionaries(st.text(max_size=8).filter(lambda k: k not in props),
                               values(extra if isinstance(extra, dict) else {}, components), max_size=2)  # fmt: skip
        return st.tuples(base, more).map(lambda pair: {**pair[1], **pair[0]})
    raise AssertionError(f"schema type this generator does not know: {kind}")


class Document:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._paths = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", p) + "$"), p) for p in doc["paths"]]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for pattern, template in self._paths:
            if pattern.match(path):
                op = self.doc["paths"][template].get(method.lower())
                if op is not None:
                    return template, op
        return None

    def schema(self, ref: dict[str, Any]) -> dict[str, Any]:
        return {**ref, "components": self.doc["components"]}

    def check(self, method: str, path: str, status: int, body: bytes) -> None:
        found = self.operation(method, path)
        assert found is not None, f"{method} {path}: not in the document"
        template, op = found
        response = op["responses"].get(str(status))
        assert response is not None, f"{method} {template}: status {status} is not documented ({body[:200]!r})"
        schema = response["content"]["application/json"]["schema"]
        validator = Draft202012Validator(self.schema(schema), format_checker=FormatChecker())
        errors = sorted(validator.iter_errors(json.loads(body)), key=str)
        assert not errors, f"{method} {template} {status}: {errors[0].message} at {list(errors[0].absolute_path)}"


def conforming(doc: Document) -> Any:
    """An httpx response hook: every /v1 response is checked against `doc`."""

    async def hook(response: httpx.Response) -> None:
        path = response.request.url.path
        if path.startswith("/v1/") and path != "/v1/openapi.json" and not path.startswith("/v1/providers/"):
            await response.aread()
            doc.check(response.request.method, path, response.status_code, response.content)

    return hook
