"""EmpireConfig -> policy, and which EmpireConfig is in force. PURE: no kopf, no I/O, no clock.

The operator's handlers are thin: they hand the CR body to `parse_spec` and act on the
`SpecResult`. The spec is validated with the same `parse_policy` as a policy file, so a CR and a
YAML file fail with the same `path: message` lines (without line numbers: the API server keeps
no source text).

One agent runs one policy. When several EmpireConfigs exist in the watched namespaces,
`choose_active` picks the *oldest* one (creation time, then namespace/name) that is not being
deleted; the others report `Ready=False, reason=NotActive`. Oldest-wins is stable: creating a
second config never displaces the one in force, and deleting the active one hands over to the
next oldest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from empire.policies.errors import Issue, PolicyError
from empire.policies.schema import Policy, parse_policy, policy_version

__all__ = [
    "Candidate",
    "ConfigRef",
    "SpecResult",
    "choose_active",
    "parse_spec",
    "plain",
]


@dataclass(frozen=True, order=True)
class ConfigRef:
    """Which EmpireConfig (and which generation of its spec)."""

    namespace: str
    name: str
    generation: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def describe(self) -> str:
        return f"EmpireConfig {self.namespace}/{self.name}"

    def source(self) -> str:
        """The `source` recorded with a policy version in the state DB."""
        return f"{self.describe()} generation {self.generation}"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ConfigRef:
        meta = body.get("metadata") or {}
        return cls(str(meta.get("namespace") or ""), str(meta.get("name") or ""), int(meta.get("generation") or 0))


def plain(value: Any) -> Any:
    """A deep copy made of dicts, lists and scalars (kopf hands out read-only mapping views)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class SpecResult:
    """A validated spec (`policy`, `version`) or the reasons it is invalid (`issues`)."""

    ref: ConfigRef
    policy: Policy | None = None
    version: str | None = None
    issues: tuple[Issue, ...] = ()
    body: dict[str, Any] = field(default_factory=dict)  # the policy as stored: defaults filled, aliases

    @property
    def ok(self) -> bool:
        return self.policy is not None

    def issue_lines(self, limit: int | None = None) -> list[str]:
        lines = [f"{i.path}: {i.message}" for i in self.issues]
        if limit is not None and len(lines) > limit:
            lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
        return lines


def parse_spec(spec: Mapping[str, Any] | None, ref: ConfigRef) -> SpecResult:
    """Validate a CR `spec` as a policy. An absent or empty spec is the valid, idle-by-default `{}`."""
    data = plain(spec) if spec is not None else {}
    try:
        policy = parse_policy(data, source=ref.describe())
    except PolicyError as exc:
        return SpecResult(ref=ref, issues=tuple(exc.issues))
    body = policy.model_dump(mode="json", by_alias=True)
    return SpecResult(ref=ref, policy=policy, version=policy_version(policy), body=body)


@dataclass(frozen=True)
class Candidate:
    """What `choose_active` needs to know about one EmpireConfig (kept in a kopf index)."""

    namespace: str
    name: str
    created: str  # metadata.creationTimestamp (RFC 3339, so strings sort in time order)
    deleting: bool = False
    generation: int = 0
    spec: str = "{}"  # the spec as canonical JSON: hashable, and enough to apply it on hand-over

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def ref(self) -> ConfigRef:
        return ConfigRef(self.namespace, self.name, self.generation)

    def spec_dict(self) -> dict[str, Any]:
        return json.loads(self.spec)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Candidate:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            created=str(meta.get("creationTimestamp") or ""),
            deleting=bool(meta.get("deletionTimestamp")),
            generation=int(meta.get("generation") or 0),
            spec=json.dumps(plain(body.get("spec") or {}), sort_keys=True, separators=(",", ":")),
        )


def choose_active(candidates: Iterable[Candidate], exclude: tuple[str, str] | None = None) -> Candidate | None:
    """The EmpireConfig in force: the oldest one not being deleted (ties: namespace, then name)."""
    live = [c for c in candidates if not c.deleting and c.key != exclude]
    if not live:
        return None
    return min(live, key=lambda c: (c.created or "~", c.namespace, c.name))
