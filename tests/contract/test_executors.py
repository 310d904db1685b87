"""The Executor port for ScaleTo: the Kubernetes scale subresource (against a fake API server over
real HTTP) and the dry-run pretend cluster; then the Kubernetes adapter's failure handling."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from empire.agent.kube.dryrun import DryRunExecutor
from empire.agent.kube.kubeconfig import ClusterConfig, load_cluster_config
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.records import ActionRecord, ActionState
from empire.agent.types import OutcomeStatus, Reason, ScaleTo
from empire.config.settings import KubernetesSettings
from empire.errors import ConfigError, NotFoundError, PermanentError, TemporaryError
from empire.policies.scaling import Target
from fakes.kubernetes import FakeKubernetes

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def scale(replicas: int, current: int | None = 2, name: str = "web", kind: str = "Deployment") -> ScaleTo:
    return ScaleTo(name, "music", kind, name, replicas, current, (Reason.above_target,))


def target(name: str = "web", kind: str = "Deployment") -> Target:
    return Target.model_validate({"name": name, "workload": {"name": name, "namespace": "music", "kind": kind},
                                  "max_replicas": 20, "signals": [{"name": "q", "query": "q", "target": 1}]})  # fmt: skip


def record(action: ScaleTo) -> ActionRecord:
    return ActionRecord(f"k-{action.replicas}", "scale", action.target, action.params(), "above_target",
                        ActionState.intent, NOW, NOW)  # fmt: skip


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def kube():
    fake = FakeKubernetes(token="sa-token")
    fake.add("web", 2, "music", annotations={"empire.io/paused": "true"})
    fake.add("db", 3, "music", kind="statefulsets", ready=1)
    with fake.serve() as url:
        fake.url = url
        yield fake


@pytest.fixture
def scaler(kube):
    return KubernetesScaler(ClusterConfig(server=kube.url, source="test", token="sa-token"), sleep=no_sleep)


@pytest.fixture(params=["kubernetes", "dryrun"])
def executor(request, kube, scaler):
    return scaler if request.param == "kubernetes" else DryRunExecutor()


async def test_contract_reads_scales_and_reads_back(executor):
    before = await executor.workload(target())
    assert before.replicas in (1, 2)  # dry run starts at min_replicas
    out = await executor.execute(scale(5, before.replicas))
    assert out.ok and out.state["replicas"] == 5
    assert (await executor.workload(target())).replicas == 5
    rb = await executor.read_back(record(scale(5)))
    assert rb.applied in (True, False) and isinstance(rb.note, str)


async def test_kubernetes_scale_and_read_back(kube, scaler):
    wl = await scaler.workload(target())
    assert (wl.replicas, wl.annotations) == (2, {"empire.io/paused": "true"})
    out = await scaler.execute(scale(6))
    assert (out.status, kube.replicas("web", "music")) == (OutcomeStatus.applied, 6)
    assert (await scaler.read_back(record(scale(6)))).applied is True
    assert (await scaler.read_back(record(scale(9)))).applied is False
    sts = await scaler.workload(target("db", "StatefulSet"))
    assert (sts.replicas, sts.ready_replicas) == (3, 1)
    await scaler.execute(scale(4, 3, "db", "StatefulSet"))
    assert kube.replicas("db", "music", "statefulsets") == 4


async def test_kubernetes_skips_writes_that_change_nothing(kube, scaler):
    out = await scaler.execute(scale(2))
    assert (out.status, out.reason) == (OutcomeStatus.unchanged, Reason.no_change)
    assert kube.patches == [] and [m for m, _ in kube.requests] == ["GET"]


async def test_kubernetes_retries_conflicts_and_server_errors(kube, scaler):
    kube.fail_next(409, 503, 429, retry_after=0)
    out = await scaler.execute(scale(7))
    assert out.status == OutcomeStatus.applied and kube.replicas("web", "music") == 7


async def test_kubernetes_concurrent_change_is_a_conflict_then_rebased(kube, scaler):
    """Someone scales between our GET and PATCH: the stale resourceVersion gets 409, we re-read."""
    kube.before_patch = lambda name: (
        kube.set_replicas(name, 3, "music") if not kube.patches and kube.replicas(name, "music") == 2 else None
    )
    out = await scaler.execute(scale(8))
    assert out.status == OutcomeStatus.applied and out.state["previous"] in (2, 3)
    assert kube.replicas("web", "music") == 8


async def test_kubernetes_gives_up_after_the_attempts(kube, scaler):
    kube.fail_next(503, 503, 503, 503)
    with pytest.raises(TemporaryError, match="503"):
        await scaler.execute(scale(7))
    assert kube.replicas("web", "music") == 2


async def test_kubernetes_forbidden_names_the_rbac_rule(kube, scaler):
    kube.forbid("patch")
    with pytest.raises(PermanentError) as err:
        await scaler.execute(scale(7))
    msg = str(err.value)
    assert 'resources: ["deployments/scale"], verbs: ["patch"]' in msg and 'namespace "music"' in msg
    assert not isinstance(err.value, TemporaryError)


async def test_kubernetes_missing_workload_and_bad_token(kube, scaler):
    with pytest.raises(NotFoundError, match="ghost"):
        await scaler.execute(scale(3, 1, "ghost"))
    wrong = KubernetesScaler(ClusterConfig(server=kube.url, source="test", token="nope"), sleep=no_sleep)
    with pytest.raises(PermanentError, match="401"):
        await wrong.workload(target())


async def test_kubeconfig_and_in_cluster_loading(tmp_path, kube, monkeypatch):
    cfg = tmp_path / "config"
    cfg.write_text(f"""
apiVersion: v1
kind: Config
current-context: test
contexts: [{{name: test, context: {{cluster: fake, user: bot}}}}, {{name: other, context: {{cluster: fake, user: exec}}}}]
clusters: [{{name: fake, cluster: {{server: "{kube.url}"}}}}]
users: [{{name: bot, user: {{token: sa-token}}}}, {{name: exec, user: {{exec: {{command: aws-not-installed}}}}}}]
""")
    cc = load_cluster_config(KubernetesSettings(mode="kubeconfig", kubeconfig=cfg))
    assert cc is not None and "sa-token" not in repr(cc)
    scaler = KubernetesScaler(cc)
    assert (await scaler.workload(target())).replicas == 2
    with pytest.raises(ConfigError, match="exec plugin 'aws-not-installed' not found"):  # more in test_kubeconfig_auth
        load_cluster_config(KubernetesSettings(mode="kubeconfig", kubeconfig=cfg, context="other")).bearer_token()
    with pytest.raises(ConfigError, match="no context named 'nope'"):
        load_cluster_config(KubernetesSettings(mode="kubeconfig", kubeconfig=cfg, context="nope"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    assert load_cluster_config(KubernetesSettings(mode="auto")) is None
    assert load_cluster_config(KubernetesSettings(mode="disabled")) is None
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("rotating-1\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    incluster = load_cluster_config(KubernetesSettings(mode="auto"), sa_dir=sa)
    assert incluster.server == "https://10.0.0.1:6443" and incluster.bearer_token() == "rotating-1"
