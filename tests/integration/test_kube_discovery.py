"""Any scalable workload: the kind is found through API discovery and scaled through `/scale`.

Against the fake API server over real HTTP: it serves discovery (`/api`, `/apis`, group versions
with `NAME/scale` entries), apps/v1 workloads, a custom resource (`example.com/v1 Stage`, its
replicas at `spec.size`) and an Argo Rollout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.records import ActionRecord, ActionState
from empire.agent.types import OutcomeStatus, Reason, ScaleTo
from empire.errors import PermanentError
from empire.policies.scaling import Target
from fakes.kubernetes import FakeKubernetes

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 3, 1, tzinfo=UTC)


async def no_sleep(_: float) -> None:
    return None


def target(kind: str, name: str, api_version: str | None = None) -> Target:
    wl: dict[str, Any] = {"name": name, "namespace": "music", "kind": kind}
    if api_version:
        wl["api_version"] = api_version
    return Target.model_validate({"name": name, "workload": wl, "max_replicas": 20,
                                  "signals": [{"name": "q", "query": "q", "target": 1}]})  # fmt: skip


@pytest.fixture
def kube():
    fake = FakeKubernetes()
    fake.add("web", 2, "music")
    fake.add("pool", 3, "music", kind="replicasets")
    fake.add("render", 4, "music", kind="stages")
    fake.add("canary", 1, "music", kind="rollouts")
    with fake.serve() as url:
        fake.url = url
        yield fake


@pytest.fixture
async def scaler(kube):
    s = KubernetesScaler(ClusterConfig(server=kube.url, source="test"), sleep=no_sleep)
    yield s
    await s.aclose()


def scale_to(t: Target, replicas: int, current: int) -> ScaleTo:
    wl = t.workload
    return ScaleTo(t.name, wl.namespace, wl.kind, wl.name, replicas, current, (Reason.above_target,), wl.api_version)


@pytest.mark.parametrize(
    ("kind", "name", "plural", "api_version", "before"),
    [
        ("Deployment", "web", "deployments", None, 2),
        ("ReplicaSet", "pool", "replicasets", None, 3),
        ("Stage", "render", "stages", None, 4),  # a custom resource: replicas at spec.size, read through /scale
        ("Rollout", "canary", "rollouts", "argoproj.io/v1alpha1", 1),
    ],
)
async def test_any_kind_with_a_scale_subresource_is_read_scaled_and_read_back(
    kube, scaler, kind, name, plural, api_version, before
) -> None:
    t = target(kind, name, api_version)
    assert (await scaler.workload(t)).replicas == before
    out = await scaler.execute(scale_to(t, 7, before))
    assert out.status == OutcomeStatus.applied and kube.replicas(name, "music", kind=plural) == 7
    params = scale_to(t, 7, before).params()
    rec = ActionRecord(f"k-{name}", "scale", name, params, "above_target", ActionState.intent, NOW, NOW)
    assert (await scaler.read_back(rec)).applied is True
    assert any(p.endswith(f"/{plural}/{name}/scale") for m, p in kube.requests if m == "PATCH")


async def test_discovery_is_cached_and_refreshed_on_a_miss(kube, scaler) -> None:
    await scaler.workload(target("Deployment", "web"))
    first = len(kube.discovery_requests)
    assert first > 0 and "/apis" in kube.discovery_requests
    await scaler.workload(target("ReplicaSet", "pool"))
    await scaler.workload(target("Stage", "render"))
    assert len(kube.discovery_requests) == first  # all from the cache
    # a CRD installed later: its kind is a miss, which refreshes discovery once the cache is old enough
    kube.add_resource("games.example.org", "v1", "servers", "GameServerSet")
    kube.add("arena", 2, "music", kind="servers")
    scaler.discovery.refresh_after = 0
    assert (await scaler.workload(target("GameServerSet", "arena"))).replicas == 2
    assert len(kube.discovery_requests) > first


async def test_an_unknown_kind_is_a_permanent_error_naming_what_was_found(scaler) -> None:
    with pytest.raises(PermanentError) as err:
        await scaler.workload(target("Rolout", "canary"))
    msg = str(err.value)
    assert "Rolout not found through API discovery" in msg
    assert "Rollout (argoproj.io/v1alpha1)" in msg and "Deployment (apps/v1)" in msg  # what is scalable


async def test_a_kind_without_scale_subresource_is_refused_by_name(scaler) -> None:
    with pytest.raises(PermanentError, match=r"ConfigMap \(v1 configmaps\) has no scale subresource"):
        await scaler.workload(target("ConfigMap", "settings"))
    with pytest.raises(PermanentError, match=r"Deployment.*exists in apps/v1"):
        await scaler.workload(target("Deployment", "web", "extensions/v1beta1"))


async def test_a_kind_in_several_groups_asks_for_api_version(kube, scaler) -> None:
    kube.add_resource("other.example.com", "v1", "stages2", "Stage")
    with pytest.raises(PermanentError, match=r"served by several API groups.*api_version"):
        await scaler.workload(target("Stage", "render"))
    assert (await scaler.workload(target("Stage", "render", "example.com/v1"))).replicas == 4
