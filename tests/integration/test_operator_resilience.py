"""The operator on what a real cluster throws at it, against kmock and a real state DB:

* specs a real API server stores (they pass the CRD's OpenAPI schema and its CEL rules, checked
  with `fakes.admission`) but the policy refuses: references CEL cannot follow (an alert route's
  receiver, an alert rule's signal of another target, a remediation's target) and values in range
  for the schema but not for the policy (a rate period of 45m, a stabilization window of 2h):
  Ready=False with the field path, the last good policy stays in force, `empire_operator_invalid_specs`;
* watch expiry: the API server ends the watch with `410 Gone` (resource version too old) after a
  change the operator never saw as an event; it lists afresh, reconciles that change, and later ones;
* two replicas with kopf peering: only the higher priority one acts; when it stops, the other
  takes over and reconciles the next change.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from empire.agent.clock import FakeClock
from empire.operator.crd import GROUP, KIND, PLURAL, VERSION
from empire.operator.handlers import OperatorConfig
from empire.operator.spec import ConfigRef, parse_spec
from empire.operator.testing import kube_api, operator_running
from empire.policies.loading import default_policy_path
from empire.state.database import Database
from empire.state.store import SqlStateStore
from fakes.admission import admitted

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

NS = "empire"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BASE = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"


class SteppingClock(FakeClock):
    def now(self) -> datetime:
        return self.advance(0.001)


def example_spec() -> dict[str, Any]:
    return yaml.safe_load(default_policy_path().read_text())


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-03-01T00:00:00Z"}, "spec": spec}  # fmt: skip


def config(url: str, database_url: str, registry: CollectorRegistry) -> OperatorConfig:
    return OperatorConfig(database_url=database_url, status_interval=0.3, server=url, clock=SteppingClock(NOW),
                          retry_delay=0.2, registry=registry)  # fmt: skip


async def until(check: Callable[[], Any], limit: float = 30.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def key_of(api: Any, name: str) -> Any:
    return next(k for k, o in list(api.objects.items())
                if (k[0].plural, k[1], k[2]) == (PLURAL, NS, name) and not o.deleted)  # fmt: skip


def obj(api: Any, name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(api.objects[key_of(api, name)].raw))


def ready(api: Any, name: str, generation: int, status: str = "True") -> dict[str, Any] | None:
    conds = (obj(api, name).get("status") or {}).get("conditions") or []
    c = next((c for c in conds if c["type"] == "Ready"), None)
    return c if c and c["status"] == status and c["observedGeneration"] == generation else None


def applies(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("empire_operator_reconciles_total", {"handler": "apply", "result": result}) or 0


@pytest.fixture
async def store(database_url: str):
    db = await Database.open(database_url)
    try:
        yield SqlStateStore(db)
    finally:
        await db.close()


def _route_receiver(s: dict[str, Any]) -> None:
    s["alerting"]["route"]["routes"][0]["receiver"] = "pager"


def _rule_signal(s: dict[str, Any]) -> None:
    s["alerting"]["rules"][0]["signal"] = "qeue"


def _remediation_target(s: dict[str, Any]) -> None:
    next(r for r in s["alerting"]["rules"] if r.get("remediation"))["remediation"]["scale"]["target"] = "apii"


def _rate_period(s: dict[str, Any]) -> None:
    s["targets"][0]["behavior"] = {"scale_up": {"policies": [{"type": "pods", "value": 4, "period": "45m"}]}}


def _window(s: dict[str, Any]) -> None:
    s["targets"][0]["behavior"] = {"scale_down": {"stabilization_window": "2h"}}


ADMITTED_BUT_REFUSED = [
    (_route_receiver, "alerting.route.routes[0].receiver", "unknown receiver 'pager'"),
    (_rule_signal, "alerting.rules[0].signal", "unknown signal 'qeue' of target 'generator'"),
    (_remediation_target, ".remediation.scale.target", "unknown target 'apii'"),
    (_rate_period, "targets[0].behavior.scale_up.policies[0]", "period must be between 1s and 30m"),
    (_window, "targets[0].behavior.scale_down", "stabilization_window must be at most 1h"),
]


async def test_specs_the_api_server_stores_but_the_policy_refuses(store: SqlStateStore, database_url: str) -> None:
    spec = example_spec()
    good = parse_spec(spec, ConfigRef(NS, "main", 1)).version
    registry = CollectorRegistry()
    async with kube_api() as (api, url), operator_running(config(url, database_url, registry), NS):
        await api.post(BASE, json=body("main", spec))
        await until(lambda: ready(api, "main", 1), what="Ready")
        generation = 1
        for edit, path, message in ADMITTED_BUT_REFUSED:
            bad = copy.deepcopy(spec)
            edit(bad)
            assert admitted(bad) == [], f"a real API server would refuse it already: {admitted(bad)}"
            await api.patch(f"{BASE}/main", json={"spec": bad})
            generation += 1
            c = await until(lambda g=generation: ready(api, "main", g, "False"), what=f"Ready=False for {path}")
            assert c["reason"] == "InvalidSpec" and path in c["message"] and message in c["message"]
            assert f"policy version {good} stays in force" in c["message"]
            issues = obj(api, "main")["status"]["issues"]
            assert any(i["path"].endswith(path) and message in i["message"] for i in issues), issues
            assert (await store.latest_policy_version())["version"] == good  # the agent keeps the last good policy
            assert registry.get_sample_value("empire_operator_invalid_specs") == 1
        await api.patch(f"{BASE}/main", json={"spec": spec | {"loop": {**spec["loop"], "interval": "20s"}}})
        generation += 1
        await until(lambda: ready(api, "main", generation), what="Ready after the fix")
        assert (await store.latest_policy_version())["version"] != good
        assert registry.get_sample_value("empire_operator_invalid_specs") == 0
        assert applies(registry, "invalid") == len(ADMITTED_BUT_REFUSED)


async def test_watch_expiry_410_relists_and_reconciles(store: SqlStateStore, database_url: str) -> None:
    spec = example_spec()
    registry = CollectorRegistry()
    async with kube_api() as (api, url), operator_running(config(url, database_url, registry), NS):
        await api.post(BASE, json=body("main", spec))
        await until(lambda: ready(api, "main", 1), what="Ready")
        lists_before = len(lists(api))
        assert lists_before >= 1

        # A change the watch never delivers (made while it was expiring), then 410 Gone on the watch.
        changed = copy.deepcopy(spec)
        changed["loop"]["interval"] = "20s"
        key = key_of(api, "main")
        meta = obj(api, "main")["metadata"]
        api.objects[key].patch({"spec": changed, "metadata": {"generation": 2,
                                                              "resourceVersion": str(int(meta["resourceVersion"]) + 1000)}})  # fmt: skip
        await api._buses[key[0]].put({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
            "message": "too old resource version", "metadata": {"namespace": NS, "name": "expired"}}})  # fmt: skip

        await until(lambda: ready(api, "main", 2), what="the missed change reconciled after the re-list")
        assert len(lists(api)) > lists_before  # it listed afresh
        v2 = parse_spec(changed, ConfigRef(NS, "main", 2)).version
        assert (await store.latest_policy_version())["version"] == v2

        # And it keeps watching: a later change arrives as an event and is reconciled.
        later = copy.deepcopy(changed)
        later["loop"]["interval"] = "25s"
        await api.patch(f"{BASE}/main", json={"spec": later})
        await until(lambda: ready(api, "main", 3), what="a later change reconciled")
        assert (await store.latest_policy_version())["version"] == parse_spec(later, ConfigRef(NS, "main", 3)).version
        assert applies(registry, "error") == 0


def lists(api: Any) -> list[Any]:
    """LIST requests (not watches) of EmpireConfigs made by the operator."""
    return [r for r in list(api) if r.resource is not None and r.resource.plural == PLURAL and r.method == "GET"
            and r.name is None and str(dict(r.params).get("watch", "")).lower() not in ("true", "1")
            and not str(r.headers.get("User-Agent", "")).startswith("kmock")]  # fmt: skip


async def test_two_replicas_one_acts_the_other_takes_over(store: SqlStateStore, database_url: str) -> None:
    spec = example_spec()
    first, second = CollectorRegistry(), CollectorRegistry()
    async with kube_api() as (api, url):
        await api.post(f"/apis/kopf.dev/v1/namespaces/{NS}/kopfpeerings", json={
            "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "empire", "namespace": NS}})  # fmt: skip
        peering = ("--peering", "empire")
        async with operator_running(config(url, database_url, second), NS, *peering, "--priority", "50"):
            async with operator_running(config(url, database_url, first), NS, *peering, "--priority", "100"):
                await until(lambda: len(peers(api)) == 2, what="both replicas in the KopfPeering")
                await asyncio.sleep(1.0)  # the lower one sees the higher one and pauses
                await api.post(BASE, json=body("main", spec))
                await until(lambda: ready(api, "main", 1), what="Ready")
                edited = spec | {"loop": {**spec["loop"], "interval": "20s"}}
                await api.patch(f"{BASE}/main", json={"spec": edited})
                await until(lambda: ready(api, "main", 2), what="Ready for generation 2")
                await asyncio.sleep(1.0)  # the status timer ticks (0.3 s) in whichever replica is active
                assert applies(first, "applied") == 2
                assert sum(applies(second, r) for r in ("applied", "unchanged", "invalid", "inactive")) == 0
                assert (second.get_sample_value("empire_operator_reconcile_duration_seconds_count",
                                                {"handler": "agent-status"}) or 0) == 0  # fmt: skip
            # the first replica stopped (and left the peering): the second resumes
            await until(lambda: len(peers(api)) == 1, what="the first replica left the peering")
            last = edited | {"loop": {**spec["loop"], "interval": "25s"}}
            await api.patch(f"{BASE}/main", json={"spec": last})
            await until(lambda: ready(api, "main", 3), what="the second replica reconciled generation 3")
            assert applies(second, "applied") >= 1
            v3 = parse_spec(last, ConfigRef(NS, "main", 3)).version
            assert (await store.latest_policy_version())["version"] == v3


def peers(api: Any) -> dict[str, Any]:
    for (res, ns, name), o in list(api.objects.items()):
        if (res.plural, ns, name) == ("kopfpeerings", NS, "empire") and not o.deleted:
            return {k: v for k, v in (o.raw.get("status") or {}).items() if v}
    return {}
