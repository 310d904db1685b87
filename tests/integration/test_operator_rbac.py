"""The shipped RBAC covers every API call the agent and the operator make, and nothing more.

Both run against a Kubernetes API mock (kmock) that records each request: the agent's
`KubernetesScaler` (discovery, read a workload, check for other autoscalers, scale it with its
Events, read the scale back, for a Deployment, a StatefulSet and an Argo Rollout), its Secret reader (the example policy's `secret:` references), and the operator's
handlers in peering mode (create, an invalid edit, the status timer, delete). Each request is
turned into RBAC attributes and must be allowed by the Role in `deploy/base/rbac.yaml`; each grant of
the Role must be used by some request.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.kubesecrets import KubernetesSecretReader
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.records import ActionRecord, ActionState
from empire.agent.types import Reason, ScaleTo
from empire.operator.crd import GROUP, KIND, PLURAL, VERSION
from empire.operator.handlers import OperatorConfig
from empire.operator.rbac import Attributes, request_attributes, role_allows, unused_grants
from empire.operator.testing import kube_api, operator_running
from empire.policies.loading import default_policy_path, load_policy

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "base"
NS = "empire"
DISCOVERY = ("/api", "/apis", "/version")


def manifests(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def role() -> dict[str, Any]:
    return next(d for d in manifests("rbac.yaml") if d["kind"] == "Role")


def recorded(api: Any) -> tuple[list[Attributes], list[str]]:
    """(resource calls as RBAC attributes, non-resource paths) of the agent's and operator's requests.

    The test's own set-up requests (made with kmock's client) are left out."""
    calls, other = [], []
    for r in list(api):
        if str(r.headers.get("User-Agent", "")).startswith("kmock"):
            continue
        method = r.method.value if hasattr(r.method, "value") else str(r.method)
        attrs = request_attributes(method, r.url.path, dict(r.params))
        if attrs is None:
            other.append(r.url.path)
        else:
            calls.append(attrs)
    return calls, other


async def agent_calls(api: Any, url: str) -> None:
    """Everything the agent's Kubernetes executor does (discovery, the workload and its scale, the
    conflict check, Events: new and aggregated), for a Deployment, a StatefulSet and an Argo Rollout."""
    import kmock

    api.resources["argoproj.io/v1alpha1/rollouts"] = kmock.ResourceInfo(
        kind="Rollout", namespaced=True, subresources={"scale"}, verbs={"get", "list", "patch", "create"}
    )
    policy = load_policy(default_policy_path()).policy
    deployment = policy.target("generator")

    def other(kind: str, name: str, api_version: str | None = None) -> Any:
        wl = deployment.workload.model_copy(update={"kind": kind, "name": name, "api_version": api_version})
        return deployment.model_copy(update={"name": name, "workload": wl})

    statefulset, rollout = other("StatefulSet", "db"), other("Rollout", "canary", "argoproj.io/v1alpha1")
    for group, plural, kind, name in (("apps/v1", "deployments", "Deployment", "generator"),
                                      ("apps/v1", "statefulsets", "StatefulSet", "db"),
                                      ("argoproj.io/v1alpha1", "rollouts", "Rollout", "canary")):  # fmt: skip
        await api.post(f"/apis/{group}/namespaces/{NS}/{plural}", json={
            "apiVersion": group, "kind": kind,
            "metadata": {"name": name, "namespace": NS}, "spec": {"replicas": 2}, "status": {"readyReplicas": 2},
        })  # fmt: skip
    await api.post(f"/api/v1/namespaces/{NS}/secrets", json={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "music-api", "namespace": NS},
        "data": {"key-2": base64.b64encode(b"not-a-real-key").decode()},
    })  # fmt: skip
    secret_refs = [a.api_key.secret for p in policy.providers for a in p.accounts if a.api_key and a.api_key.secret]
    assert secret_refs, "the example policy names a Kubernetes Secret"
    reader = KubernetesSecretReader(ClusterConfig(server=url, source="test"), NS)
    try:
        for ref in secret_refs:
            assert await anyio.to_thread.run_sync(reader, ref.name, ref.key) == "not-a-real-key"
    finally:
        reader.close()
    scaler = KubernetesScaler(ClusterConfig(server=url, source="test"))
    now = datetime(2026, 3, 1, tzinfo=UTC)
    try:
        for target in (deployment, statefulset, rollout):
            state = await scaler.workload(target)
            assert state.replicas == 2
            wl = target.workload
            for replicas, current in ((5, 2), (2, 5), (5, 2)):  # the second 2 -> 5 aggregates its Event
                action = ScaleTo(target.name, wl.namespace, wl.kind, wl.name, replicas, current,
                                 (Reason.above_target,), wl.api_version)  # fmt: skip
                outcome = await scaler.execute(action)
                assert outcome.ok, outcome
            record = ActionRecord(
                idempotency_key=f"scale:{target.name}", kind="scale", subject=target.name, params=action.params(),
                reason="above_target", state=ActionState.intent, created_at=now, updated_at=now,
            )  # fmt: skip
            assert (await scaler.read_back(record)).applied is True
    finally:
        await scaler.aclose()


async def operator_calls(api: Any, url: str, database_url: str) -> None:
    """The operator's life cycle on one EmpireConfig, with kopf peering on (as deployed)."""
    await api.post(f"/apis/kopf.dev/v1/namespaces/{NS}/kopfpeerings",
                   json={"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                         "metadata": {"name": "empire", "namespace": NS}})  # fmt: skip
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
    spec = yaml.safe_load(default_policy_path().read_text())
    config = OperatorConfig(database_url=database_url, status_interval=0.2, server=url, retry_delay=0.2)

    def ready() -> dict[str, Any] | None:
        for (res, ns, name), obj in list(api.objects.items()):
            if (res.plural, ns, name) == (PLURAL, NS, "empire") and not obj.deleted:
                conds = (obj.raw.get("status") or {}).get("conditions") or []
                return next((c for c in conds if c["type"] == "Ready"), None)
        return None

    async def until(check: Any) -> None:
        for _ in range(400):
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("timed out")

    async with operator_running(config, NS, "--peering", "empire", "--priority", "100"):
        await api.post(base, json={"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                                   "metadata": {"name": "empire", "namespace": NS}, "spec": spec})  # fmt: skip
        await until(lambda: (c := ready()) and c["status"] == "True")
        bad = {**spec, "loop": {"interval": "soon"}}
        await api.patch(f"{base}/empire", json={"spec": bad})
        await until(lambda: (c := ready()) and c["reason"] == "InvalidSpec")
        await asyncio.sleep(0.5)  # status timer ticks
        await api.delete(f"{base}/empire")
        await until(lambda: ready() is None)


async def test_rbac_covers_every_call_and_grants_nothing_unused(tmp_path: Path) -> None:
    async with kube_api() as (api, url):
        await agent_calls(api, url)
        await operator_calls(api, url, f"sqlite+aiosqlite:///{tmp_path / 'empire.db'}")
        calls, other = recorded(api)

    r = role()
    denied = sorted({f"{c.verb} {c.api_group or 'core'}/{c.full_resource} ns={c.namespace} name={c.name}"
                     for c in calls if not role_allows(r, c)})  # fmt: skip
    assert denied == [], "deploy/base/rbac.yaml denies calls the agent or operator make"
    assert {p for p in other if not p.startswith(DISCOVERY)} == set()  # only discovery, open to all users
    assert unused_grants(r, calls) == [], "deploy/base/rbac.yaml grants more than the agent and operator use"
    kinds = {(c.api_group, c.full_resource, c.verb) for c in calls}
    assert ("apps", "deployments/scale", "patch") in kinds and ("apps", "statefulsets/scale", "patch") in kinds
    assert ("", "events", "create") in kinds and ("kopf.dev", "kopfpeerings", "patch") in kinds
    assert ("argoproj.io", "rollouts/scale", "patch") in kinds and ("", "events", "patch") in kinds
    assert ("autoscaling", "horizontalpodautoscalers", "list") in kinds and (
        "keda.sh",
        "scaledobjects",
        "list",
    ) in kinds
    assert ("", "secrets", "get") in kinds and not [c for c in calls if c.resource == "secrets" and c.verb != "get"]
    assert {(c.api_group, c.verb) for c in calls if c.verb in ("create", "delete", "update")} == {("", "create")}


def test_service_account_has_no_cluster_wide_grant() -> None:
    docs = [d for name in ("rbac.yaml", "deployment.yaml") for d in manifests(name)]
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert [(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings] == [("Role", "empire")]
    assert bindings[0]["subjects"] == [{"kind": "ServiceAccount", "name": "empire", "namespace": NS}]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "empire"
