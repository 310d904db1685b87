"""Another autoscaler on the same workload: an HPA or a KEDA ScaledObject is detected, the target is
decided but not acted on (reason `conflict`: journal, /status, metric, Warning event, the operator's
Degraded condition) until it is gone; then the agent acts again. The check is periodic and cached.

Against the fake API server over real HTTP, the loop on a fake clock, the journal in SQLite
(and PostgreSQL when available)."""

from __future__ import annotations

import pytest

from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.types import Reason
from empire.cli.explain import render
from empire.operator.status import agent_status
from empire.state.store import SqlStateStore
from fakes.kubernetes import FakeKubernetes
from fakes.loop import build_loop, policy, target_spec
from fakes.prometheus import FakePrometheus

pytestmark = pytest.mark.anyio


async def no_sleep(_: float) -> None:
    return None


class Ticker:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def kube():
    fake = FakeKubernetes(keda=True)
    fake.add("gen", 2, "music")
    fake.add("db", 2, "music", kind="statefulsets")
    with fake.serve() as url:
        fake.url = url
        yield fake


def scaler_for(kube, ticker=None, every: float = 60.0) -> KubernetesScaler:
    extra = {"monotonic": ticker} if ticker is not None else {}
    return KubernetesScaler(ClusterConfig(server=kube.url, source="test"), sleep=no_sleep,
                            conflict_check_every=every, **extra)  # fmt: skip


def target(name: str = "gen", kind: str = "Deployment"):
    from empire.policies.scaling import Target

    return Target.model_validate({"name": name, "workload": {"name": name, "namespace": "music", "kind": kind},
                                  "max_replicas": 20, "signals": [{"name": "q", "query": "q", "target": 1}]})  # fmt: skip


async def test_hpa_and_scaled_object_are_found_by_their_scale_target_ref(kube) -> None:
    kube.add_hpa("other", "Deployment", "somebody-else", "music")
    kube.add_hpa("sts-hpa", "StatefulSet", "gen", "music")  # same name, other kind: no conflict
    kube.add_hpa("elsewhere", "Deployment", "gen", "other-ns")
    scaler = scaler_for(kube, every=0)
    try:
        assert (await scaler.workload(target())).conflicts == ()
        kube.add_hpa("gen-hpa", "Deployment", "gen", "music")
        kube.add_scaled_object("gen-keda", "gen", "music")  # scaleTargetRef.kind defaults to Deployment
        assert (await scaler.workload(target())).conflicts == ("HorizontalPodAutoscaler/gen-hpa",
                                                              "ScaledObject/gen-keda")  # fmt: skip
        assert (await scaler.workload(target("db", "StatefulSet"))).conflicts == ()
        warned = [e for e in kube.events.values() if e["reason"] == "ConflictingAutoscaler"]
        assert len(warned) == 1 and warned[0]["type"] == "Warning" and "gen-hpa" in warned[0]["message"]
    finally:
        await scaler.aclose()


async def test_keda_not_installed_is_no_conflict_not_an_error(kube) -> None:
    plain = FakeKubernetes()  # no keda.sh API: its list answers 404
    plain.add("gen", 2, "music")
    with plain.serve() as url:
        plain.url = url
        scaler = scaler_for(plain)
        try:
            state = await scaler.workload(target())
        finally:
            await scaler.aclose()
    assert state.conflicts == () and state.replicas == 2
    assert any(p.endswith("/scaledobjects") for p in plain.list_requests)


async def test_the_check_is_cached_per_namespace(kube) -> None:
    ticker = Ticker()
    scaler = scaler_for(kube, ticker, every=60)
    try:
        for _ in range(5):
            await scaler.workload(target())
            await scaler.workload(target("db", "StatefulSet"))
            ticker.t += 5
        assert len(kube.list_requests) == 2  # one HPA list, one ScaledObject list for the namespace
        kube.add_hpa("gen-hpa", "Deployment", "gen", "music")
        assert (await scaler.workload(target())).conflicts == ()  # not seen until the cache expires
        ticker.t += 60
        assert (await scaler.workload(target())).conflicts == ("HorizontalPodAutoscaler/gen-hpa",)
        assert len(kube.list_requests) == 4
    finally:
        await scaler.aclose()


async def test_a_forbidden_list_is_no_conflict_and_scaling_goes_on(kube, caplog) -> None:
    kube.forbid("list")
    scaler = scaler_for(kube)
    try:
        assert (await scaler.workload(target())).conflicts == ()
    finally:
        await scaler.aclose()
    assert (
        "cannot list HorizontalPodAutoscalers" in caplog.text
        and 'resources: ["horizontalpodautoscalers"]' in caplog.text
    )


async def test_the_loop_holds_a_conflicting_target_until_the_hpa_is_gone(kube, database) -> None:
    prom = FakePrometheus()
    prom.series["sum(queue_gen)"] = 300.0  # 6 replicas' worth
    with prom.serve() as purl:
        from empire.agent.observers.prometheus import PrometheusObserver

        obs = PrometheusObserver(purl, retries=0, sleep=no_sleep)
        store = SqlStateStore(database)
        clock_box: dict[str, float] = {"t": 0.0}
        ex = scaler_for(kube, lambda: clock_box["t"], every=30)
        loop = build_loop(policy(target_spec("gen")), obs, ex, store)
        kube.add_hpa("gen-hpa", "Deployment", "gen", "music")
        try:
            (d,) = await loop.tick()
            assert Reason.conflict in d.reasons and d.actions == () and d.desired == 2
            assert d.details["conflicts"] == ["HorizontalPodAutoscaler/gen-hpa"] and d.details["would_scale_to"] == 6
            assert kube.replicas("gen", "music") == 2 and kube.patches == []
            labels = {"target": "gen", "namespace": "music", "workload": "gen", "workload_kind": "Deployment"}
            assert loop.monitor.registry.get_sample_value("empire_target_conflict", labels) == 1
            snap = loop.snapshot()["targets"]["gen"]
            assert "conflict" in snap["reasons"] and snap["conflicts"] == ["HorizontalPodAutoscaler/gen-hpa"]
            [rec] = await store.recent_decisions("gen", limit=1)
            assert "conflict" in rec.reasons  # the journal: what `empire explain gen` prints
            text = "\n".join(render([rec], {}))
            assert "conflict" in text.split("    reasons: ")[1].splitlines()[0].split(", ")
            assert (
                "conflict: HorizontalPodAutoscaler/gen-hpa also targets the workload: not scaled (would scale to 6)"
                in text
            )
            # the operator's Degraded condition, from the same journal
            status = agent_status(loop.policy.policy, {"gen": rec}, None, rec.at, 1)
            [degraded] = [c for c in status["conditions"] if c["type"] == "Degraded"]
            assert (degraded["status"], degraded["reason"]) == ("True", "AutoscalerConflict")
            assert "conflict with HorizontalPodAutoscaler/gen-hpa" in degraded["message"]

            kube.remove_autoscaler("horizontalpodautoscalers", "gen-hpa", "music")
            loop.clock.advance(15)
            clock_box["t"] += 15
            (d,) = await loop.tick()  # still cached: held
            assert Reason.conflict in d.reasons and kube.patches == []
            loop.clock.advance(15)
            clock_box["t"] += 15
            (d,) = await loop.tick()  # the check ran again: resolved, acts
            assert Reason.conflict not in d.reasons and kube.replicas("gen", "music") == 6
            assert loop.monitor.registry.get_sample_value("empire_target_conflict", labels) == 0
        finally:
            await obs.aclose()
            await ex.aclose()
