"""Events like HPA's on the workload: SuccessfulRescale per applied scale, FailedRescale when it
fails; identical events aggregated (count bumped), a flapping target rate-limited; a failure to
post never fails the action. Against the fake API server over real HTTP, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.monitor import Monitor
from empire.agent.types import OutcomeStatus, Reason, ScaleTo
from empire.errors import PermanentError
from fakes.kubernetes import FakeKubernetes

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def kube():
    fake = FakeKubernetes()
    fake.add("web", 2, "music")
    with fake.serve() as url:
        fake.url = url
        yield fake


@pytest.fixture
async def world(kube):
    clock, monitor = Clock(), Monitor(CollectorRegistry())
    s = KubernetesScaler(ClusterConfig(server=kube.url, source="test"), sleep=no_sleep, monitor=monitor, now=clock,
                         instance="empire-0")  # fmt: skip
    yield s, clock, monitor.registry
    await s.aclose()


def scale(replicas: int, *reasons: Reason) -> ScaleTo:
    return ScaleTo("web", "music", "Deployment", "web", replicas, None, reasons or (Reason.above_target,))


def events(kube, reason: str) -> list[dict]:
    return [e for e in kube.events.values() if e["reason"] == reason]


def counted(registry, type_: str, result: str) -> float:
    return registry.get_sample_value("empire_kube_events_total", {"type": type_, "result": result}) or 0.0


async def test_every_applied_scale_posts_successful_rescale_with_the_reason(kube, world) -> None:
    scaler, _, registry = world
    await scaler.execute(scale(5, Reason.above_target, Reason.rate_limited_up))
    [ev] = events(kube, "SuccessfulRescale")
    assert ev["type"] == "Normal" and ev["message"] == "New size: 5; reason: above_target, rate_limited_up"
    assert ev["involvedObject"] == {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "music",
                                    "name": "web", "uid": "uid-deployments-web"}  # fmt: skip
    assert ev["source"] == {"component": "empire"} and ev["reportingInstance"] == "empire-0"
    out = await scaler.execute(scale(5))  # nothing to change: no event, as HPA
    assert out.status == OutcomeStatus.unchanged and len(kube.events) == 1
    assert counted(registry, "Normal", "posted") == 1


async def test_a_failed_scale_posts_failed_rescale_and_still_raises(kube, world) -> None:
    scaler, _, _ = world
    kube.forbid("patch")
    with pytest.raises(PermanentError):
        await scaler.execute(scale(6))
    [ev] = events(kube, "FailedRescale")
    assert ev["type"] == "Warning" and ev["message"].startswith("New size: 6; reason: above_target; error: ")
    assert "forbidden" in ev["message"]


async def test_a_flapping_target_bumps_counts_and_is_rate_limited(kube, world) -> None:
    scaler, clock, registry = world
    for i in range(40):  # 3 <-> 5 every 15 s: two distinct messages
        clock.at += timedelta(seconds=15)
        await scaler.execute(scale(5 if i % 2 == 0 else 3))
    rescales = events(kube, "SuccessfulRescale")
    assert len(rescales) == 2  # two Event objects, not forty
    assert sum(e["count"] for e in rescales) + counted(registry, "Normal", "dropped") == 40
    assert sum(e["count"] for e in rescales) <= 25 + 2  # the burst, plus what 10 minutes refilled
    assert counted(registry, "Normal", "dropped") > 0 and counted(registry, "Normal", "aggregated") > 0
    assert max(e["lastTimestamp"] for e in rescales) > min(e["firstTimestamp"] for e in rescales)


async def test_posting_failing_never_fails_the_action(kube, world) -> None:
    scaler, _, registry = world
    kube.fail_events(403)
    out = await scaler.execute(scale(4))
    assert out.status == OutcomeStatus.applied and kube.replicas("web", "music") == 4
    assert counted(registry, "Normal", "failed") == 1 and kube.events == {}


async def test_an_expired_event_is_posted_again(kube, world) -> None:
    scaler, clock, _ = world
    await scaler.execute(scale(4))
    kube.events.clear()  # the API server dropped it (events live an hour)
    kube.set_replicas("web", 2, "music")
    clock.at += timedelta(hours=2)
    await scaler.execute(scale(4))
    [ev] = events(kube, "SuccessfulRescale")
    assert ev["count"] == 1
