"""pydantic's type errors reach operators in their words: the expected shape, the valid keys, the
kind of value given. And no error ever shows a value given for a secret.

Found by audit: `api_key: sk-123` gave "Input should be a valid dictionary or instance of
SecretRef", `budget: 5` "... instance of Budget", a scalar for a list "Input should be a valid tuple".
"""

from __future__ import annotations

import traceback
import types
import typing
from typing import Any

import pytest
import yaml
from policy_text import errors
from pydantic import BaseModel

from empire.policies.common import SecretRef
from empire.policies.errors import PolicyError
from empire.policies.loading import load_policy_text
from empire.policies.schema import Policy

REF = "{env: VAR}, {file: /path} or {secret: {name: NAME, key: KEY}}"


def test_inline_api_key_says_what_a_reference_is_and_does_not_echo_it() -> None:
    lines = errors("providers:\n  - name: m\n    accounts:\n      - {name: a, api_key: sk-123}\n")
    assert lines == [
        f"p.yaml:4: providers[0].accounts[0].api_key: expected a reference to the secret, {REF}, "
        "never the secret itself; got a string"
    ]


def test_scalar_for_a_section_names_the_mapping_and_its_keys() -> None:
    assert errors("budget: 5\n") == ["p.yaml:1: budget: expected a mapping with keys daily, monthly; got a number"]
    assert errors("loop: [15s]\n") == ["p.yaml:1: loop: expected a mapping with keys interval, dry_run; got a list"]


def test_scalar_for_a_list_says_expected_a_list() -> None:
    lines = errors("personas:\n  - {name: p, genres: rock, providers: [m]}\n")
    assert lines == ["p.yaml:2: personas[0].genres: expected a list ([a, b] or one '- item' per line); got a string"]
    assert errors("targets: api\n") == [
        "p.yaml:1: targets: expected a list ([a, b] or one '- item' per line); got a string"
    ]


def test_list_for_a_free_form_mapping() -> None:
    text = "alerting:\n  rules:\n    - {name: r, kind: threshold, target: t, signal: s, threshold: 1, labels: [team]}\n"
    assert errors(text) == ["p.yaml:3: alerting.rules[0].labels: expected a mapping (key: value); got a list"]


def test_scalar_types_and_names() -> None:
    text = """targets:
  - name: Api
    workload: {name: api}
    max_replicas: ten
    paused: maybe
    signals: [{name: cpu, query: q, target: high}]
"""
    assert errors(text) == [
        "p.yaml:2: targets[0].name: expected a name: lower-case letters, digits, '.', '_' and '-', starting and "
        "ending with a letter or digit, at most 63 characters",
        "p.yaml:4: targets[0].max_replicas: expected an integer (a whole number); got a string",
        "p.yaml:6: targets[0].signals[0].target: expected a number; got a string",
        "p.yaml:5: targets[0].paused: expected true or false; got a string",
    ]


def test_empty_required_list() -> None:
    text = "targets:\n  - {name: api, workload: {name: api}, max_replicas: 3, signals: []}\n"
    assert errors(text) == ["p.yaml:2: targets[0].signals: must not be empty (at least 1 item)"]


# ----------------------------------------------------------------- secrets never in messages

MARK = "sk-live-9f8e7d6c5b4a"
NUMBER = 8675309123
SECRET_FIELDS: dict[tuple[str, str], Any] = {  # (model, field) -> policy placing a value at it
    ("Account", "api_key"): lambda v: {"providers": [{"name": "m", "accounts": [{"name": "a", "api_key": v}]}]},
    ("HttpProviderSpec", "callback_secret"): lambda v: {
        "providers": [
            {
                "name": "m",
                "kind": "http",
                "http": {"submit_url": "http://127.0.0.1/x", "callback_secret": v},
                "accounts": [{"name": "a"}],
            }
        ]
    },
    ("SlackReceiver", "webhook_url"): lambda v: {
        "alerting": {"receivers": [{"name": "dashboard", "slack": {"webhook_url": v}}]}
    },
    ("EmailReceiver", "password"): lambda v: {
        "alerting": {
            "receivers": [
                {"name": "dashboard", "email": {"to": ["a@b.c"], "from": "e@b.c", "smarthost": "h:25", "password": v}}
            ]
        }
    },
    ("AlertmanagerReceiver", "password"): lambda v: {
        "alerting": {
            "receivers": [
                {"name": "dashboard", "alertmanager": {"url": "http://127.0.0.1:9093", "username": "u", "password": v}}
            ]
        }
    },
    ("S3Backend", "access_key_id"): lambda v: {
        "storage": {"s3": {"bucket": "bkt", "access_key_id": v, "secret_access_key": {"env": "S"}}}
    },
    ("S3Backend", "secret_access_key"): lambda v: {
        "storage": {"s3": {"bucket": "bkt", "access_key_id": {"env": "A"}, "secret_access_key": v}}
    },
}
BAD_SHAPES = {
    "inline string": MARK,
    "inline number": NUMBER,
    "in a list": [MARK],
    "as a key": {MARK: "x"},
    "as an extra key": {"env": "VAR", MARK: 1},
    "as the secret name": {"secret": MARK},
    "as an extra key of secret": {"secret": {"name": "n", "key": "k", MARK: 1}},
    "as a key under env": {"env": {MARK: 1}},
    "in a list under file": {"file": [MARK]},
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list, dict):
        return [m for a in typing.get_args(annotation) if a is not Ellipsis for m in _models_in(a)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def _all_models(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[type[BaseModel]]:
    seen = set() if seen is None else seen
    if model not in seen:
        seen.add(model)
        for field in model.model_fields.values():
            for sub in _models_in(field.annotation):
                _all_models(sub, seen)
    return seen


def _secret_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[tuple[str, str]]:
    return {
        (m.__name__, name)
        for m in _all_models(model)
        for name, field in m.model_fields.items()
        if SecretRef in _models_in(field.annotation)
    }


def test_every_secret_field_of_the_schema_is_covered_below() -> None:
    assert _secret_fields(Policy, set()) == set(SECRET_FIELDS)


@pytest.mark.parametrize("shape", list(BAD_SHAPES))
@pytest.mark.parametrize("field", list(SECRET_FIELDS), ids=lambda f: ".".join(f))
def test_no_error_shows_a_value_given_for_a_secret(field: tuple[str, str], shape: str) -> None:
    text = yaml.safe_dump(SECRET_FIELDS[field](BAD_SHAPES[shape]))
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    exc = info.value
    shown = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    assert MARK not in shown and str(NUMBER) not in shown
    assert exc.__context__ is None and exc.__cause__ is None  # the ValidationError (holding inputs) is not kept
    assert all(field[1] in i.path for i in exc.issues), exc.issues  # still says where


def test_an_unknown_key_in_a_secret_reference_is_not_shown() -> None:
    text = "alerting:\n  receivers:\n    - name: s\n      slack:\n        webhook_url: {https://hooks.example/T0/B0/XYZ: 1}\n"
    assert errors(text) == [
        "p.yaml:5: alerting.receivers[0].slack.webhook_url: unknown key (not shown: it may be the secret); "
        f"valid keys: env, file, secret; a reference is {REF}"
    ]


# ----------------------------------------------------------------- URLs never carry credentials

URL_FIELDS: dict[tuple[str, str], Any] = {  # (model, field) -> policy placing a URL at it
    ("HttpProviderSpec", "submit_url"): lambda u: {
        "providers": [{"name": "m", "kind": "http", "http": {"submit_url": u}, "accounts": [{"name": "a"}]}]
    },
    ("HttpProviderSpec", "poll_url"): lambda u: {
        "providers": [
            {
                "name": "m",
                "kind": "http",
                "http": {"submit_url": "http://h/x", "poll_url": u},
                "accounts": [{"name": "a"}],
            }
        ]
    },
    ("HttpProviderSpec", "lookup_url"): lambda u: {
        "providers": [
            {
                "name": "m",
                "kind": "http",
                "http": {"submit_url": "http://h/x", "idempotency": "ignored", "lookup_url": u},
                "accounts": [{"name": "a"}],
            }
        ]
    },
    ("AnalyticsSpec", "url"): lambda u: {
        "providers": [{"name": "m", "accounts": [{"name": "a"}], "analytics": {"url": u}}]
    },
    ("AlertmanagerReceiver", "url"): lambda u: {
        "alerting": {"receivers": [{"name": "dashboard", "alertmanager": {"url": u}}]}
    },
    ("AlertingPolicy", "external_url"): lambda u: {"alerting": {"external_url": u}},
    ("S3Backend", "endpoint_url"): lambda u: {"storage": {"s3": {"bucket": "bkt", "endpoint_url": u}}},
}


def test_every_url_field_of_the_schema_is_covered_below() -> None:
    """A URL field added later must refuse credentials too: add it to URL_FIELDS (and type it `Url`)."""
    found = {
        (m.__name__, name)
        for m in _all_models(Policy)
        for name, field in m.model_fields.items()
        if name.endswith("url") and not _models_in(field.annotation)
    }
    assert found == set(URL_FIELDS)


@pytest.mark.parametrize("field", list(URL_FIELDS), ids=lambda f: ".".join(f))
def test_a_url_with_credentials_is_refused_without_showing_them(field: tuple[str, str]) -> None:
    text = yaml.safe_dump(URL_FIELDS[field](f"http://user:{MARK}@127.0.0.1:9093/x"))
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    exc = info.value
    assert MARK not in str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    [issue] = [i for i in exc.issues if field[1] in i.path]
    assert issue.message.startswith("a URL in the policy must not carry credentials (user:password@)")
    load_policy_text(yaml.safe_dump(URL_FIELDS[field]("http://127.0.0.1:9093/x")), source="p.yaml")  # no error
