"""Does an RBAC Role allow an API call? The API server's authorization rules, for tests. PURE.

The shipped Role (`deploy/base/rbac.yaml`) is meant to be exactly what the agent and the operator
need. The RBAC test records every request they make against a Kubernetes API mock, turns each
into the attributes the API server authorizes (`request_attributes`: verb, API group, resource,
subresource, namespace, name, following `k8s.io/apiserver` request-info rules), and checks them
against the rules (`rule_allows`). It also reports rules no call used, so the Role cannot
quietly grow beyond least privilege.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Attributes", "request_attributes", "role_allows", "rule_allows", "unused_grants"]

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Attributes:
    """What RBAC authorizes: one verb on one (sub)resource, maybe one named object."""

    verb: str
    api_group: str
    resource: str
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_attributes(method: str, path: str, query: Mapping[str, Any] | None = None) -> Attributes | None:
    """RBAC attributes of an HTTP request, or None for a non-resource URL (discovery, /version)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None  # /api/v1, /apis/group/version: discovery
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        namespace = rest[1]  # the namespace object itself
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else ""
    m = method.upper()
    if m == "GET":
        watch = str((query or {}).get("watch", "")).lower() in ("1", "true")
        verb = "get" if name is not None and not watch else ("watch" if watch else "list")
    elif m == "DELETE":
        verb = "delete" if name is not None else "deletecollection"
    else:
        verb = _VERBS.get(m, m.lower())
    return Attributes(verb, group, resource, subresource, namespace, name)


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    """One PolicyRule of a Role/ClusterRole against one request."""
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    verbs = rule.get("verbs") or []
    names = rule.get("resourceNames") or []
    if attrs.api_group not in groups and "*" not in groups:
        return False
    if attrs.verb not in verbs and "*" not in verbs:
        return False
    wanted = attrs.full_resource
    if (
        wanted not in resources
        and "*" not in resources
        and not (attrs.subresource and f"*/{attrs.subresource}" in resources)
    ):
        return False
    return not names or (attrs.name is not None and attrs.name in names)


def role_allows(role: Mapping[str, Any], attrs: Attributes) -> bool:
    """A namespaced Role grants only in its own namespace; a ClusterRole (bound cluster-wide) anywhere."""
    if role.get("kind") == "Role" and attrs.namespace != (role.get("metadata") or {}).get("namespace"):
        return False
    return any(rule_allows(r, attrs) for r in role.get("rules") or [])


def unused_grants(role: Mapping[str, Any], calls: Iterable[Attributes]) -> list[str]:
    """Each (rule, resource, verb) of `role` that no call in `calls` needed: "group/resource verb"."""
    calls = list(calls)
    unused = []
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    narrow = {**rule, "apiGroups": [group], "resources": [resource], "verbs": [verb]}
                    if not any(rule_allows(narrow, c) and role_allows({**role, "rules": [narrow]}, c) for c in calls):
                        unused.append(f"{group or 'core'}/{resource} {verb}")
    return unused
