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

ROOT = Path(__file__).resolve().parents[2] / "deploy"
DEPLOY = ROOT / "base"
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
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk  # the example EmpireConfig (deploy/empireconfig.yaml) is applied separately
    for gen in kustomization()["configMapGenerator"]:
        for f in gen["files"]:
            assert (DEPLOY / f).is_file()


def test_namespaced_objects_live_in_the_empire_namespace() -> None:
    for d in all_docs():
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"].get("namespace") == NS, d["kind"]
    [ns] = yaml.safe_load_all((ROOT / "overlays" / "default" / "namespace.yaml").read_text())
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == NS


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
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]] == [
        "metrics", "op-metrics"
    ]  # fmt: skip
    operator = containers()["operator"]
    op_port = next(p for p in operator["ports"] if p["name"] == "op-metrics")
    args = operator["args"]
    assert args[args.index("--metrics-port") + 1] == str(op_port["containerPort"]) == "9465"


def test_peering_object_matches_the_operator_and_its_rbac() -> None:
    peering = one("KopfPeering")
    assert peering["metadata"]["name"] == DEFAULT_PEERING
    role = one("Role")
    named = [r for r in role["rules"] if r.get("resourceNames") and r["apiGroups"] == ["kopf.dev"]]
    assert named == [{"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "resourceNames": [DEFAULT_PEERING],
                      "verbs": ["patch"]}]  # fmt: skip
    crds = {d["metadata"]["name"] for d in all_docs() if d["kind"] == "CustomResourceDefinition"}
    assert crds == set()  # in deploy/crds: `kubectl delete -k` of the base or an overlay keeps them
    [own] = yaml.safe_load_all((ROOT / "crds" / "empireconfigs.yaml").read_text())
    [peer] = [d for d in yaml.safe_load_all((ROOT / "crds" / "kopf-peering" / "crd.yaml").read_text()) if d]
    assert (own["metadata"]["name"], peer["metadata"]["name"]) == ("empireconfigs.empire.io", "kopfpeerings.kopf.dev")


def test_role_covers_the_namespaces_of_the_example_policys_targets() -> None:
    example = yaml.safe_load((ROOT / "empireconfig.yaml").read_text())
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
    example = yaml.safe_load((ROOT / "empireconfig.yaml").read_text())
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


def kustomize(path: Path) -> list[dict[str, Any]]:
    res = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_the_crds_apart_from_the_base_and_overlays() -> None:
    """`kubectl delete -k` of the base or an overlay must not delete a CRD (and with it every
    EmpireConfig, or the KopfPeering CRD other kopf operators share); the namespace is optional."""
    assert [d["kind"] for d in kustomize(ROOT / "crds")] == ["CustomResourceDefinition"]
    assert [d["kind"] for d in kustomize(ROOT / "crds" / "kopf-peering")] == ["CustomResourceDefinition"]
    base = kustomize(DEPLOY)
    kinds = sorted(d["kind"] for d in base)
    assert "CustomResourceDefinition" not in kinds and "Namespace" not in kinds
    assert "ConfigMap" in kinds and "Deployment" in kinds
    default = kustomize(ROOT / "overlays" / "default")
    assert sorted(d["kind"] for d in default) == sorted([*kinds, "Namespace"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_ha_overlay_runs_two_replicas_on_postgresql_and_redis_from_a_secret() -> None:
    docs = kustomize(ROOT / "overlays" / "ha")
    assert "PersistentVolumeClaim" not in {d["kind"] for d in docs}
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = dep["spec"]["template"]["spec"]
    assert [v for v in pod["volumes"] if v["name"] == "data"] == [{"name": "data", "emptyDir": {}}]
    for c in pod["containers"]:
        env = {e["name"]: e for e in c["env"]}
        ref = env["EMPIRE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "empire-state", "key": "database-url"}
        args = build_parser().parse_args(c["args"])
        if args.command == "operator":
            assert args.standalone is False and args.peering == DEFAULT_PEERING  # one operator acts
        else:
            assert env["EMPIRE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "redis-url"
