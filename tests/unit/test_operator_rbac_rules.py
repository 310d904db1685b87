"""Request -> RBAC attributes and rule matching, as the API server does it (pure)."""

from __future__ import annotations

import pytest

from empire.operator.rbac import Attributes, request_attributes, role_allows, rule_allows, unused_grants


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/apis/apps/v1/namespaces/ns/deployments/web", {}, Attributes("get", "apps", "deployments", "", "ns", "web")),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web/scale", {},
         Attributes("patch", "apps", "deployments", "scale", "ns", "web")),
        ("GET", "/apis/empire.io/v1alpha1/namespaces/ns/empireconfigs", {}, Attributes("list", "empire.io", "empireconfigs", "", "ns")),
        ("GET", "/apis/empire.io/v1alpha1/namespaces/ns/empireconfigs", {"watch": "true"},
         Attributes("watch", "empire.io", "empireconfigs", "", "ns")),
        ("POST", "/api/v1/namespaces/ns/events", {}, Attributes("create", "", "events", "", "ns")),
        ("GET", "/api/v1/namespaces", {}, Attributes("list", "", "namespaces")),
        ("GET", "/api/v1/namespaces/ns", {}, Attributes("get", "", "namespaces", "", "ns", "ns")),
        ("DELETE", "/api/v1/namespaces/ns/pods", {}, Attributes("deletecollection", "", "pods", "", "ns")),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.io", {},
         Attributes("get", "apiextensions.k8s.io", "customresourcedefinitions", "", None, "x.io")),
    ],
)  # fmt: skip
def test_request_attributes(method: str, path: str, query: dict, expected: Attributes) -> None:
    assert request_attributes(method, path, query) == expected


@pytest.mark.parametrize("path", ["/api", "/apis", "/api/v1", "/apis/apps/v1", "/version", "/healthz"])
def test_discovery_is_not_a_resource_request(path: str) -> None:
    assert request_attributes("GET", path) is None


ROLE = {
    "kind": "Role",
    "metadata": {"namespace": "ns"},
    "rules": [
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
        {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "resourceNames": ["empire"], "verbs": ["patch"]},
    ],
}


def test_rules_match_group_resource_subresource_verb_and_name() -> None:
    scale = Attributes("patch", "apps", "deployments", "scale", "ns", "web")
    assert role_allows(ROLE, scale)
    assert not role_allows(ROLE, Attributes("patch", "apps", "deployments", "", "ns", "web"))  # not the subresource
    assert not role_allows(ROLE, Attributes("update", "apps", "deployments", "scale", "ns", "web"))
    assert not role_allows(ROLE, Attributes("patch", "", "deployments", "scale", "ns", "web"))
    assert not role_allows(
        ROLE, Attributes("patch", "apps", "deployments", "scale", "other", "web")
    )  # a Role is namespaced
    assert role_allows(
        {**ROLE, "kind": "ClusterRole"}, Attributes("patch", "apps", "deployments", "scale", "other", "w")
    )
    assert role_allows(ROLE, Attributes("patch", "kopf.dev", "kopfpeerings", "", "ns", "empire"))
    assert not role_allows(ROLE, Attributes("patch", "kopf.dev", "kopfpeerings", "", "ns", "other"))
    assert not role_allows(ROLE, Attributes("list", "kopf.dev", "kopfpeerings", "", "ns"))  # names never match a list


def test_wildcards() -> None:
    star = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert rule_allows(star, Attributes("delete", "x", "y", "z", "ns", "n"))
    assert rule_allows({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]},
                       Attributes("get", "apps", "statefulsets", "scale", "ns", "db"))  # fmt: skip


def test_unused_grants() -> None:
    calls = [Attributes("get", "apps", "deployments", "scale", "ns", "web")]
    assert unused_grants(ROLE, calls) == ["apps/deployments/scale patch", "kopf.dev/kopfpeerings patch"]
