"""Policy errors an operator can act on: `path: message`, the nearest valid key for a typo, the line.

pydantic reports locations as tuples and messages in its own words; operators need
`targets[0].behavior.scale_down.stabilization_window: invalid duration '5 min' ...` and, for an
unknown key, the key they probably meant. Line numbers come from re-composing the YAML text, so the
message points at the place in the file to edit.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from empire.errors import ConfigError

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


def issues_from_validation_error(exc: ValidationError, root: type[BaseModel], text: str | None = None) -> list[Issue]:
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
            if parent is not None:
                valid = _valid_keys(parent)
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                message = f"unknown key {key!r}; {hint}valid keys: {', '.join(valid)}"
            else:
                message = f"unknown key {key!r}"
        elif err["type"] == "missing":
            message = "required field is missing"
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
