"""The manifests in deploy/ fit together: what the kustomization lists, what the pod runs (checked
with the real CLI parser), what the Service and ServiceMonitor select, and what the RBAC and the
peering object name. No cluster needed; `kubectl kustomize` is used when installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from empire.cli import build_parser
from empire.operator.runner import DEFAULT_PEERING

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NS = "empire"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def all_docs() -> list[dict[str, Any]]:
    return [d for name in kustomization()["resources"] for d in docs(name)]


def one(kind: str) -> dict[str, Any]:
    [doc] = [d for d in all_docs() if d["kind"] == kind]
    return doc


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml", "empireconfig.yaml"}
    assert listed == on_disk  # the example EmpireConfig is applied separately, on purpose
    for gen in kustomization()["configMapGenerator"]:
        for f in gen["files"]:
            assert (DEPLOY / f).is_file()


def test_namespaced_objects_live_in_the_empire_namespace() -> None:
    for d in all_docs():
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"].get("namespace") == NS, d["kind"]
    assert one("Namespace")["metadata"]["name"] == NS


def containers() -> dict[str, dict[str, Any]]:
    pod = one("Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def test_pod_runs_the_agent_and_the_operator_with_valid_cli_arguments() -> None:
    c = containers()
    assert set(c) == {"agent", "operator"}
    assert c["agent"]["image"] == c["operator"]["image"]
    parser = build_parser()
    agent = parser.parse_args(c["agent"]["args"])
    assert agent.command == "run"
    op = parser.parse_args(c["operator"]["args"])
    assert (op.command, op.operator_command, op.standalone) == ("operator", "run", False)
    assert op.peering == DEFAULT_PEERING  # several replicas: kopf peering, one active
    env = {e["name"]: e for e in c["operator"]["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert c["operator"]["livenessProbe"]["httpGet"]["port"] == "probe"
    assert op.liveness.endswith(":8080/healthz") and c["operator"]["ports"][0]["containerPort"] == 8080


def test_both_containers_share_the_state_db_volume() -> None:
    c = containers()
    for name in ("agent", "operator"):
        env = {e["name"]: e.get("value") for e in c[name]["env"]}
        mounts = {m["name"]: m["mountPath"] for m in c[name]["volumeMounts"]}
        assert mounts["data"] == env["EMPIRE_DATA_DIR"] == "/var/lib/empire"
    pod = one("Deployment")["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    pvc = one("PersistentVolumeClaim")
    assert claim == pvc["metadata"]["name"] and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert one("Deployment")["spec"]["strategy"]["type"] == "Recreate"  # SQLite on RWO: one pod at a time


def test_containers_are_locked_down() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in containers().values():
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "memory" in c["resources"]["limits"]


def test_agent_probes_and_metrics_port_are_wired_to_the_service_and_servicemonitor() -> None:
    agent = containers()["agent"]
    port = next(p for p in agent["ports"] if p["name"] == "metrics")
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["EMPIRE_HTTP__HOST"] == "0.0.0.0" and port["containerPort"] == 9464  # noqa: S104 - in a pod
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    svc, sm = one("Service"), one("ServiceMonitor")
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]


def test_peering_object_matches_the_operator_and_its_rbac() -> None:
    peering = one("KopfPeering")
    assert peering["metadata"]["name"] == DEFAULT_PEERING
    role = one("Role")
    named = [r for r in role["rules"] if r.get("resourceNames") and r["apiGroups"] == ["kopf.dev"]]
    assert named == [{"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "resourceNames": [DEFAULT_PEERING],
                      "verbs": ["patch"]}]  # fmt: skip
    crds = {d["metadata"]["name"] for d in all_docs() if d["kind"] == "CustomResourceDefinition"}
    assert crds == {"empireconfigs.empire.io", "kopfpeerings.kopf.dev"}


def test_role_covers_the_namespaces_of_the_example_policys_targets() -> None:
    example = yaml.safe_load((DEPLOY / "empireconfig.yaml").read_text())
    assert example["metadata"]["namespace"] == NS
    namespaces = {t["workload"].get("namespace", "default") for t in example["spec"]["targets"]}
    assert namespaces == {one("Role")["metadata"]["namespace"]}  # targets elsewhere need a Role there too


def secret_names(node: Any) -> set[str]:
    """Names of the Kubernetes Secrets a policy refers to (`{secret: {name, key}}` anywhere)."""
    if isinstance(node, dict):
        found = {node["secret"]["name"]} if isinstance(node.get("secret"), dict) else set()
        return found.union(*(secret_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(secret_names(v) for v in node))
    return set()


def test_role_can_read_exactly_the_secrets_the_example_policy_names() -> None:
    example = yaml.safe_load((DEPLOY / "empireconfig.yaml").read_text())
    wanted = secret_names(example["spec"])
    assert wanted == {"music-api"}
    [rule] = [r for r in one("Role")["rules"] if "secrets" in r["resources"]]
    assert rule == {"apiGroups": [""], "resources": ["secrets"], "resourceNames": sorted(wanted), "verbs": ["get"]}


def test_user_clusterroles_aggregate_into_the_builtin_roles() -> None:
    roles = {d["metadata"]["name"]: d for d in all_docs() if d["kind"] == "ClusterRole"}
    edit, view = roles["empire-empireconfigs-edit"], roles["empire-empireconfigs-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for r in (*edit["rules"], *view["rules"]):
        assert r["apiGroups"] == ["empire.io"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders() -> None:
    res = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(res.stdout) if d)
    assert kinds.count("CustomResourceDefinition") == 2 and "ConfigMap" in kinds and "Deployment" in kinds
