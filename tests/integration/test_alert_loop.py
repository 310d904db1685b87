"""Alerting inside the control loop on a fake clock: a fake Prometheus and Kubernetes over real HTTP,
a real state DB, a real local webhook. A threshold rule with `for` fires, its scale remediation goes
through the journal and lands on the workload, the scale-down window holds it, the notification
reaches Slack, and the alert resolves when the queue drains."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import yaml

from empire.agent.alerting.job import AlertRulesJob
from empire.agent.alerting.receivers import build_receivers
from empire.agent.alerting.service import AlertService
from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.monitor import Monitor
from empire.agent.observers.prometheus import PrometheusObserver
from empire.agent.records import ActionState
from empire.agent.scheduler import PeriodicJobs
from empire.agent.types import Alert
from empire.policies.loading import load_policy_text
from empire.state.alerts import SqlAlertStore
from empire.state.store import SqlStateStore
from fakes.kubernetes import FakeKubernetes
from fakes.loop import build_loop
from fakes.prometheus import FakePrometheus
from fakes.webhook import FakeWebhook

pytestmark = pytest.mark.anyio


async def no_sleep(_: float) -> None:
    return None


POLICY = {
    "loop": {"interval": "15s"},
    "targets": [{"name": "gen", "workload": {"name": "gen", "namespace": "music"}, "min_replicas": 1,
                 "max_replicas": 20, "startup_grace": "0s",
                 "signals": [{"name": "queue", "query": "sum(queue_gen)", "type": "total", "target": 50}]}],
    "alerting": {
        "receivers": [{"name": "slack-oncall", "slack": {"webhook_url": {"env": "UNUSED"}}},
                      {"name": "dashboard", "dashboard": {}}],
        "route": {"receiver": "dashboard", "group_by": ["alertname"], "group_wait": "30s", "group_interval": "1m",
                  "repeat_interval": "4h", "routes": [{"matchers": ['severity="critical"'], "receiver": "slack-oncall"}]},
        "rules": [{"name": "queue-high", "kind": "threshold", "target": "gen", "signal": "queue", "threshold": 500,
                   "for": "30s", "severity": "critical", "summary": "queue {value} on {target}",
                   "remediation": {"scale": {"target": "gen", "by": 3}}}],
    },
}  # fmt: skip


@pytest.fixture
def world() -> Any:
    prom, kube, hook = FakePrometheus(), FakeKubernetes(token="t"), FakeWebhook()
    kube.add("gen", 2, "music")
    with prom.serve() as purl, kube.serve() as kurl, hook.serve() as hurl:
        prom.url, kube.url, hook.url = purl, kurl, hurl
        yield prom, kube, hook


async def test_threshold_alert_remediates_notifies_and_resolves(world: Any, database: Any) -> None:
    prom, kube, hook = world
    loaded = load_policy_text(yaml.safe_dump(POLICY), source="<test>")
    obs = PrometheusObserver(prom.url, retries=0, sleep=no_sleep)
    scaler = KubernetesScaler(ClusterConfig(server=kube.url, source="test", token="t"), attempts=2, sleep=no_sleep)
    store = SqlStateStore(database)
    loop = build_loop(loaded, obs, scaler, store)
    loop.jobs, loop.drive_jobs = PeriodicJobs(loop.clock, Monitor()), True
    alerts = SqlAlertStore(database)
    async with httpx.AsyncClient() as client:
        pol = loaded.policy.alerting
        service = AlertService(alerts, pol, build_receivers(pol, client, lambda ref: f"{hook.url}/hook"), loop.clock,
                               loop.monitor)  # fmt: skip
        loop.runner.register(Alert, service.executor)
        job = AlertRulesJob(lambda: loaded.policy, loop, loop.runner, alerts)
        loop.jobs.add("alert-rules", timedelta(seconds=15), job)

        async def step() -> None:
            loop.clock.advance(15)
            await loop.tick()
            await service.dispatch_once()
            await service.deliver_once()

        prom.series["sum(queue_gen)"] = 400.0  # 8 replicas' worth: scaling alone handles it
        await loop.tick()
        for _ in range(3):
            await step()
        assert kube.replicas("gen", "music") == 8 and await alerts.list_alerts() == []

        prom.series["sum(queue_gen)"] = 900.0  # 18 replicas' worth and above the alert threshold
        await step()
        assert job.last_results[0]["state"] == "pending"
        for _ in range(2):
            await step()
        [firing] = await alerts.list_alerts()
        assert firing.rule == "queue-high" and firing.annotations["summary"] == "queue 900 on gen"
        # the scaler reached 18 (16, then 18); the remediation's +3 is clamped to max_replicas, journaled as such
        assert kube.replicas("gen", "music") == 20
        journal = await store.recent_actions("gen", limit=10)
        remediation = [a for a in journal if a.reason == "remediation"]
        assert len(remediation) == 1 and remediation[0].state == ActionState.applied
        params = remediation[0].params
        assert (params["current"], params["replicas"]) == (18, 20)
        assert params["reasons"] == ["remediation", "threshold", "clamped_max"]
        for _ in range(4):
            await step()
        assert kube.replicas("gen", "music") == 20  # the next ticks do not undo the remediation
        assert len(hook.bodies) == 1 and hook.bodies[0]["text"].startswith("*[FIRING:1] queue-high*")

        prom.series["sum(queue_gen)"] = 100.0
        for _ in range(8):
            await step()
        assert await alerts.list_alerts() == []
        assert [b["text"].split("*")[1] for b in hook.bodies] == ["[FIRING:1] queue-high", "[RESOLVED:1] queue-high"]
        kinds = [(a.kind, a.reason, a.state) for a in await store.recent_actions(limit=50) if a.kind == "alert"]
        assert kinds == [("alert", "threshold", ActionState.applied)] * 2  # fired once, resolved once
    await obs.aclose()
    await scaler.aclose()
