"""The kopf handlers against a Kubernetes API mock (kmock) and a real state DB (SQLite, PostgreSQL).

What a user sees: `kubectl apply` of an EmpireConfig makes its policy the one the agent runs
(state DB), the status says Ready with the counts, Events tell each change; an invalid edit says
Ready=False with the field path and leaves the running policy alone; the agent's decisions show up
in the status; deleting the config makes the agent idle (or hands over to the next config).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from empire.agent.clock import FakeClock
from empire.agent.records import DecisionRecord
from empire.operator.crd import GROUP, KIND, PLURAL, VERSION
from empire.operator.handlers import FINALIZER, OperatorConfig
from empire.operator.spec import ConfigRef, parse_spec
from empire.operator.testing import kube_api, operator_running
from empire.policies.loading import default_policy_path
from empire.policies.schema import IDLE_POLICY
from empire.state.database import Database
from empire.state.store import SqlStateStore

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

NS = "empire"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BASE = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"


def example_spec() -> dict[str, Any]:
    return yaml.safe_load(default_policy_path().read_text())


def config_body(name: str, spec: dict[str, Any], created: str = "2026-03-01T00:00:00Z", generation: int = 1) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": generation,
                     "creationTimestamp": created, "resourceVersion": "1"},
        "spec": spec,
    }  # fmt: skip


async def until(check: Callable[[], Any], limit: float = 20.0, what: str = "condition") -> Any:
    """Poll `check` (kopf runs in a thread of its own) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def obj(api: Any, name: str) -> dict[str, Any] | None:
    for (resource, namespace, oname), o in list(api.objects.items()):
        if (resource.plural, namespace, oname) == (PLURAL, NS, name) and not o.deleted:
            return copy.deepcopy(dict(o.raw))
    return None


def cond(api: Any, name: str, type_: str) -> dict[str, Any] | None:
    o = obj(api, name) or {}
    return next((c for c in (o.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def events(api: Any, name: str | None = None) -> list[dict[str, Any]]:
    return [
        r.data
        for r in list(api)
        if r.method == "POST" and r.resource is not None and r.resource.plural == "events"
        and (name is None or r.data.get("involvedObject", {}).get("name") == name)
    ]  # fmt: skip


def status_patches(api: Any, name: str) -> list[Any]:
    """Every PATCH of the status subresource: merge patches (dicts) and JSON patches (lists of ops)."""
    return [r.data for r in list(api) if r.method == "PATCH" and r.name == name and r.subresource == "status"]


@pytest.fixture
async def store(database_url: str):
    db = await Database.open(database_url)
    try:
        yield SqlStateStore(db)
    finally:
        await db.close()


class SteppingClock(FakeClock):
    """A fake clock that moves 1 ms per reading: deterministic, yet every write gets its own instant."""

    def now(self) -> datetime:
        return self.advance(0.001)


def _config(url: str, database_url: str, interval: float = 0.3) -> OperatorConfig:
    return OperatorConfig(database_url=database_url, status_interval=interval, server=url,
                          clock=SteppingClock(NOW), retry_delay=0.2)  # fmt: skip


async def test_apply_invalid_fix_decisions_delete(store: SqlStateStore, database_url: str) -> None:
    async with kube_api() as (api, url):
        spec = example_spec()
        async with operator_running(_config(url, database_url), NS):
            await api.post(BASE, json=config_body("main", spec))

            # Applied: the policy is in the state DB as the version in force, the status says so.
            ready = await until(lambda: (c := cond(api, "main", "Ready")) and c["status"] == "True" and c, what="Ready")
            expected = parse_spec(spec, ConfigRef(NS, "main", 1))
            assert ready["reason"] == "Applied" and expected.version in ready["message"]
            row = await store.latest_policy_version()
            assert row["version"] == expected.version
            assert row["source"] == f"EmpireConfig {NS}/main generation 1"
            assert row["body"] == expected.body
            st = obj(api, "main")["status"]
            assert (st["observedGeneration"], st["targetCount"], st["personaCount"], st["providerCount"]) == (
                1,
                2,
                2,
                2,
            )
            assert st["appliedVersion"] == expected.version and st["issues"] == []
            assert FINALIZER in obj(api, "main")["metadata"]["finalizers"]
            applied = await until(lambda: [e for e in events(api, "main") if e["reason"] == "PolicyApplied"])
            assert applied[0]["type"] == "Normal" and expected.version in applied[0]["message"]
            assert "2 targets, 2 providers, 2 personas" in applied[0]["message"]
            paused = cond(api, "main", "Paused")
            assert (paused["status"], paused["reason"]) == ("False", "Active")
            # No decisions yet: the agent has not run this policy.
            degraded = await until(lambda: cond(api, "main", "Degraded"))
            assert (degraded["status"], degraded["reason"]) == ("Unknown", "AwaitingAgent")

            # Invalid edit: Ready=False with the field path; the DB keeps the last good policy.
            bad = copy.deepcopy(spec)
            bad["targets"][0]["max_replicas"] = 0
            bad["targets"][1]["behaviour"] = {}
            await api.patch(f"{BASE}/main", json={"spec": bad})
            ready = await until(lambda: (c := cond(api, "main", "Ready")) and c["status"] == "False" and c,
                                what="Ready=False")  # fmt: skip
            assert ready["reason"] == "InvalidSpec"
            assert "targets[0].max_replicas" in ready["message"]
            assert "targets[1].behaviour: unknown key 'behaviour'; did you mean 'behavior'?" in ready["message"]
            assert f"policy version {expected.version} stays in force" in ready["message"]
            st = obj(api, "main")["status"]
            assert st["observedGeneration"] == 2 and st["appliedGeneration"] == 1
            assert {i["path"] for i in st["issues"]} >= {"targets[0].max_replicas", "targets[1].behaviour"}
            assert (await store.latest_policy_version())["version"] == expected.version
            warn = await until(lambda: [e for e in events(api, "main") if e["reason"] == "InvalidSpec"])
            assert warn[0]["type"] == "Warning" and "targets[0].max_replicas" in warn[0]["message"]
            # The patch that reported it carried the condition and the issues, and nothing about the DB.
            merges = [p["status"] for p in status_patches(api, "main") if isinstance(p, dict)]
            invalid_patch = next(p for p in merges if p.get("issues"))
            assert invalid_patch["observedGeneration"] == 2 and "appliedVersion" not in invalid_patch
            ops = [op for p in status_patches(api, "main") if isinstance(p, list) for op in p]
            assert any(op["path"].startswith("/status/conditions") and "InvalidSpec" in str(op.get("value"))
                       for op in ops)  # fmt: skip

            # Fixed (and paused in dry run): a new version is applied; Paused says why.
            fixed = copy.deepcopy(spec)
            fixed["loop"]["dry_run"] = True
            await api.patch(f"{BASE}/main", json={"spec": fixed})
            ready = await until(lambda: (c := cond(api, "main", "Ready")) and c["status"] == "True" and
                                c["observedGeneration"] == 3 and c, what="Ready again")  # fmt: skip
            v3 = parse_spec(fixed, ConfigRef(NS, "main", 3)).version
            assert v3 != expected.version and v3 in ready["message"]
            assert (await store.latest_policy_version())["version"] == v3
            assert cond(api, "main", "Paused")["reason"] == "DryRun"
            assert obj(api, "main")["status"]["issues"] == []
            assert len([e for e in events(api, "main") if e["reason"] == "PolicyApplied"]) == 2

            # The agent decides: its latest decision per target reaches the status; Degraded follows.
            for target, reasons in (
                ("generator", ["above_target", "rate_limited_up"]),
                ("api", ["metrics_unavailable", "fallback_fixed"]),
            ):
                await store.record_decision(DecisionRecord(
                    target=target, at=NOW - timedelta(seconds=5), current=2, recommended=9, desired=6,
                    reasons=tuple(reasons), policy_version=v3, replica="pod-a", dry_run=True))  # fmt: skip
            targets = await until(lambda: (obj(api, "main")["status"].get("targets") or [None])[0]
                                  and obj(api, "main")["status"]["targets"][0]["desired"] == 6
                                  and obj(api, "main")["status"]["targets"], what="decisions in status")  # fmt: skip
            assert [t["name"] for t in targets] == ["generator", "api"]
            assert targets[0] == {"name": "generator", "current": 2, "recommended": 9, "desired": 6,
                                  "reasons": ["above_target", "rate_limited_up"], "decidedAt": "2026-03-01T11:59:55Z",
                                  "policyVersion": v3, "dryRun": True}  # fmt: skip
            degraded = await until(lambda: (c := cond(api, "main", "Degraded")) and c["status"] == "True" and c)
            assert degraded["reason"] == "TargetsDegraded"
            assert degraded["message"] == "api: metrics_unavailable, fallback_fixed"
            assert obj(api, "main")["status"]["agentPolicyVersion"] == v3
            await until(lambda: [e for e in events(api, "main") if e["reason"] == "TargetsDegraded"])
            # Timer refreshes that change nothing write nothing.
            n = len(status_patches(api, "main"))
            await asyncio.sleep(1.0)  # three more timer ticks
            assert len(status_patches(api, "main")) == n

            # Delete: the finalizer withdraws the policy; with no config left the agent idles.
            await api.delete(f"{BASE}/main")
            await until(lambda: obj(api, "main") is None, what="object gone (finalizer released)")
            row = await store.latest_policy_version()
            idle = parse_spec(IDLE_POLICY, ConfigRef(NS, "main"))
            assert row["version"] == idle.version and row["body"]["loop"]["dry_run"] is True
            assert row["body"]["targets"] == [] and row["body"]["personas"] == []
            gone = await until(lambda: [e for e in events(api, "main") if e["reason"] == "PolicyWithdrawn"])
            assert "no EmpireConfig left" in gone[0]["message"]
            audit = [a.action for a in await store.recent_audit()]
            assert audit[:2] == ["policy.withdraw", "policy.apply"]


async def test_second_config_waits_and_takes_over(store: SqlStateStore, database_url: str) -> None:
    async with kube_api() as (api, url):
        first, second = example_spec(), example_spec()
        second["targets"] = second["targets"][:1]
        second["alerting"]["rules"] = [r for r in second["alerting"]["rules"] if r["target"] == "generator"]
        second["alerting"]["rules"] = [r for r in second["alerting"]["rules"] if "remediation" not in r]
        async with operator_running(_config(url, database_url), NS):
            await api.post(BASE, json=config_body("first", first, created="2026-03-01T00:00:00Z"))
            await until(lambda: (c := cond(api, "first", "Ready")) and c["status"] == "True")
            await api.post(BASE, json=config_body("second", second, created="2026-03-01T01:00:00Z"))
            ready = await until(lambda: cond(api, "second", "Ready"))
            assert (ready["status"], ready["reason"]) == ("False", "NotActive")
            assert f"EmpireConfig {NS}/first is in force" in ready["message"]
            v1 = parse_spec(first, ConfigRef(NS, "first", 1)).version
            assert (await store.latest_policy_version())["version"] == v1

            await api.delete(f"{BASE}/first")
            v2 = parse_spec(second, ConfigRef(NS, "second", 1)).version
            await until(lambda: obj(api, "first") is None)
            row = await store.latest_policy_version()
            assert row["version"] == v2 and row["source"] == f"EmpireConfig {NS}/second generation 1"
            ready = await until(lambda: (c := cond(api, "second", "Ready")) and c["status"] == "True" and c)
            assert ready["reason"] == "Applied"
            assert obj(api, "second")["status"]["targetCount"] == 1
            withdrawn = await until(lambda: [e for e in events(api, "first") if e["reason"] == "PolicyWithdrawn"])
            assert f"EmpireConfig {NS}/second takes over with policy version {v2}" in withdrawn[0]["message"]


async def test_operator_restart_changes_nothing(store: SqlStateStore, database_url: str) -> None:
    async with kube_api() as (api, url):
        spec = example_spec()
        async with operator_running(_config(url, database_url), NS):
            await api.post(BASE, json=config_body("main", spec))
            await until(lambda: (c := cond(api, "main", "Ready")) and c["status"] == "True")
            await until(lambda: cond(api, "main", "Degraded"))
        before = await store.latest_policy_version()
        n_events = len(events(api, "main"))
        async with operator_running(_config(url, database_url), NS):
            await asyncio.sleep(2.0)  # resume handler + a few timer ticks
        after = await store.latest_policy_version()
        assert after["applied_at"] == before["applied_at"]  # not re-stamped
        assert len(events(api, "main")) == n_events
