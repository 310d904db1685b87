"""Policy errors an operator can act on: `path: message`, the nearest valid key for a typo, the line.

pydantic reports locations as tuples and messages in its own words; operators need
`targets[0].behavior.scale_down.stabilization_window: invalid duration '5 min' ...` and, for an
unknown key, the key they probably meant; for a wrong type, the expected shape and (for a mapping)
its valid keys. Line numbers come from re-composing the YAML text, so the message points at the
place in the file to edit. Model validators report cross-field problems through `raise_issues`, at
exact paths relative to the model. No message or path ever holds a value given for a secret: the
kind of value is named ("got a string"), never the value.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from empire.errors import ConfigError
from empire.policies.common import NAME_PATTERN, SecretRef

__all__ = [
    "Issue",
    "PolicyError",
    "duplicate_name_issues",
    "format_loc",
    "issues_from_validation_error",
    "raise_issues",
    "unknown_choice",
]


@dataclass(frozen=True)
class Issue:
    path: str
    message: str
    line: int | None = None

    def render(self, source: str | None = None) -> str:
        where = f"{source}:{self.line}: " if source and self.line else (f"{source}: " if source else "")
        return f"{where}{self.path}: {self.message}"


class PolicyError(ConfigError):
    """An invalid policy; `issues` holds one entry per problem."""

    def __init__(self, issues: list[Issue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        super().__init__("\n".join(i.render(source) for i in issues))


def unknown_choice(kind: str, value: str, valid: Sequence[str], of: str = "") -> str:
    """`unknown receiver 'dd'; did you mean 'd'? (valid: d, slack)`: what was wrong, the nearest
    valid name (as for unknown keys) and every valid one. `of` names the owner (`target 'api'`)."""
    close = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.6)
    owner = f" of {of}" if of else ""
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {value!r}{owner}{hint} (valid: {', '.join(valid) if valid else 'none defined'})"


def duplicate_name_issues(path: str, names: Sequence[str]) -> list[Issue]:
    """One issue per repeated name, at `<path>[i].name`, naming the first item that used it."""
    first: dict[str, int] = {}
    out: list[Issue] = []
    for i, name in enumerate(names):
        if name in first:
            out.append(Issue(f"{path}[{i}].name", f"name {name!r} is already used by {path}[{first[name]}]"))
        else:
            first[name] = i
    return out


def raise_issues(issues: list[Issue]) -> NoReturn:
    """Raise from a model validator with exact field paths, relative to that model.

    A plain `ValueError` is reported at the model's own path (`alerting: ...`); these issues are
    reported at `<model path>.<issue path>` (`alerting.route.routes[0].receiver: ...`), each with
    its own line number.
    """
    raise PydanticCustomError(
        "policy_references",
        "{summary}",
        {"summary": "; ".join(f"{i.path}: {i.message}" for i in issues), "issues": issues},
    )


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation may hold (through Optional, tuple[...], Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list, dict):
        found: list[Any] = []
        for arg in typing.get_args(annotation):
            if arg is not Ellipsis:
                found.extend(_unwrap(arg))
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = next(
            (f for name, f in model.model_fields.items() if part in (name, f.alias)),
            None,
        )
        if field is None:
            return None
        candidates = _unwrap(field.annotation)
        model = candidates[0] if candidates else None
    return model


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _line_of(text: str | None, loc: tuple[Any, ...]) -> int | None:
    if not text:
        return None
    import yaml  # here, not at the top: the schema (core) must not load an I/O library; only YAML text needs it

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if node is None:
            break
        nxt = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if k.value == part:
                    nxt, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        node = nxt
    return line


_REFERENCE_SHAPE = "{env: VAR}, {file: /path} or {secret: {name: NAME, key: KEY}}"


def _kind_of(value: Any) -> str:
    """What kind of value was given, never the value itself (it may be a secret)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    return type(value).__name__


def _secret_prefix(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The part of `loc` that reaches a `SecretRef` field, when `loc` goes through one."""
    for i in range(1, len(loc) + 1):
        if _model_at(root, loc[:i]) is SecretRef:
            return loc[:i]
    return None


def _type_message(err: Any, root: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """pydantic's type errors in the operator's words: the expected shape, the valid keys of a
    mapping, and the kind of value given (never the value: it may be a secret)."""
    kind, got = err["type"], _kind_of(err.get("input"))
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        model = _model_at(root, loc) if loc else root
        if model is SecretRef:
            return f"expected a reference to the secret, {_REFERENCE_SHAPE}, never the secret itself; got {got}"
        if model is not None:
            return f"expected a mapping with keys {', '.join(_valid_keys(model))}; got {got}"
        return f"expected a mapping (key: value); got {got}"
    if kind in ("tuple_type", "list_type", "set_type", "frozen_set_type", "iterable_type", "sequence_str"):
        return f"expected a list ([a, b] or one '- item' per line); got {got}"
    if kind == "string_type":
        return f"expected a string; got {got}"
    if kind in ("int_type", "int_parsing", "int_from_float", "int_parsing_size"):
        return f"expected an integer (a whole number); got {'a fraction' if kind == 'int_from_float' else got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"expected a number; got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false; got {got}"
    if kind == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == NAME_PATTERN:
        return (
            "expected a name: lower-case letters, digits, '.', '_' and '-', starting and ending with a letter "
            "or digit, at most 63 characters"
        )
    if kind == "too_short" and isinstance(err.get("input"), list | tuple):
        n = (err.get("ctx") or {}).get("min_length", 1)
        return f"must not be empty (at least {n} item{'s' if n != 1 else ''})" if not err["input"] else None
    return None


def issues_from_validation_error(exc: ValidationError, root: type[BaseModel], text: str | None = None) -> list[Issue]:
    """One `Issue` per problem, at its path and line, in words an operator can act on.

    No message or path carries a value given under a secret reference: a key typed where `env`
    belongs may be the secret itself, so its name is not shown.
    """
    issues: list[Issue] = []
    errors = exc.errors(include_url=False)
    failed = [tuple(e["loc"]) for e in errors]
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(f[: len(loc)] == loc and len(f) > len(loc) for f in failed):
            continue  # pydantic's follow-on error: items failed, so the sequence "became" short
        ctx = err.get("ctx") or {}
        if err["type"] == "policy_references":
            for sub in ctx.get("issues", []):
                full = loc + _parse_path(sub.path)
                issues.append(Issue(format_loc(full), sub.message, _line_of(text, full)))
            continue
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = _model_at(root, loc[:-1])
            key = str(loc[-1])
            if _secret_prefix(root, loc[:-1]) is not None:
                loc = loc[:-1]  # the key itself may be the secret: show neither it nor a guess at it
                valid = f"; valid keys: {', '.join(_valid_keys(parent))}" if parent is not None else ""
                message = f"unknown key (not shown: it may be the secret){valid}; a reference is {_REFERENCE_SHAPE}"
            elif parent is not None:
                valid = _valid_keys(parent)
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                message = f"unknown key {key!r}; {hint}valid keys: {', '.join(valid)}"
            else:
                message = f"unknown key {key!r}"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif (translated := _type_message(err, root, loc)) is not None:
            message = translated
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        issues.append(Issue(format_loc(loc), message, _line_of(text, loc)))
    return issues


def _parse_path(path: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for chunk in path.split("."):
        name, *indexes = chunk.split("[")
        if name:
            out.append(name)
        out.extend(int(i.rstrip("]")) for i in indexes)
    return tuple(out)
