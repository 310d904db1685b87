"""Against a real Prometheus that scrapes a test exporter (scripts/services.sh): the observer's
instant and range queries, the one-series rule on real label sets, and one loop tick from it."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from empire.agent.clock import FakeClock
from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.observers.prometheus import PrometheusObserver
from empire.agent.types import Reason, SampleStatus
from empire.policies.scaling import Target
from empire.state.memory import MemoryStateStore
from fakes.kubernetes import FakeKubernetes
from fakes.loop import build_loop, policy, target_spec

PROM = os.environ.get("EMPIRE_TEST_PROMETHEUS_URL")
PORT = os.environ.get("EMPIRE_TEST_EXPORTER_PORT")
pytestmark = [
    pytest.mark.prometheus,  # conftest.require_service: skipped without Prometheus, failed in CI
]


@pytest.fixture(scope="module")
def exporter():
    reg = CollectorRegistry()
    Gauge("empire_test_queue_jobs", "queued jobs", registry=reg).set(420)
    cpu = Gauge("empire_test_cpu_ratio", "cpu per pod", ["pod"], registry=reg)
    cpu.labels("gen-a").set(0.5)
    cpu.labels("gen-b").set(0.9)
    server, thread = start_http_server(int(PORT), addr="127.0.0.1", registry=reg)
    deadline = time.monotonic() + 60
    while True:  # until Prometheus has scraped us at least twice
        r = httpx.get(f"{PROM}/api/v1/query", params={"query": "count_over_time(empire_test_queue_jobs[1m])"})
        result = r.json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= 2:
            break
        if time.monotonic() > deadline:
            pytest.fail("Prometheus did not scrape the test exporter within 60 s")
        time.sleep(0.5)
    yield
    server.shutdown()
    thread.join(5)


def target(**signals: str) -> Target:
    return Target.model_validate({"name": "gen", "workload": {"name": "gen"}, "max_replicas": 10,
                                  "signals": [{"name": n, "query": q, "target": 50, "type": "total"}
                                              for n, q in signals.items()]})  # fmt: skip


@pytest.mark.anyio
async def test_observe_instant_queries(exporter):
    obs = PrometheusObserver(PROM, retries=1)
    now = datetime.now(UTC)
    queue, cpu, both, none = await obs.observe(
        target(queue="empire_test_queue_jobs", cpu="empire_test_cpu_ratio", both="sum(empire_test_cpu_ratio)",
               none="empire_test_absent_metric"), now)  # fmt: skip
    assert (queue.value, queue.status) == (420.0, SampleStatus.ok) and queue.staleness < 5
    assert cpu.status == SampleStatus.invalid and "2 series" in cpu.error and 'pod="gen-b"' in cpu.error
    assert both.value == pytest.approx(1.4)
    assert none.status == SampleStatus.missing
    points = await obs.history("empire_test_queue_jobs", now - timedelta(seconds=20), now, 2)
    assert points and all(v == 420.0 for _, v in points)
    await obs.aclose()


@pytest.mark.anyio
async def test_one_tick_from_real_prometheus(exporter):
    kube = FakeKubernetes()
    kube.add("gen", 2, "music")
    with kube.serve() as url:
        spec = target_spec("gen", signals=[{"name": "queue", "query": "empire_test_queue_jobs", "type": "total",
                                            "target": 50}])  # fmt: skip
        obs = PrometheusObserver(PROM)
        ex = KubernetesScaler(ClusterConfig(server=url, source="test"))
        loop = build_loop(policy(spec), obs, ex, MemoryStateStore(), clock=FakeClock(datetime.now(UTC)))
        (d,) = await loop.tick()
        assert (d.recommended, d.desired, d.reasons) == (9, 6, (Reason.above_target, Reason.rate_limited_up))
        assert kube.replicas("gen", "music") == 6
        await obs.aclose()
        await ex.aclose()
