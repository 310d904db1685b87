"""The alert service end to end on a real state DB (SQLite, and PostgreSQL when available) with a real
local webhook: Alert actions through the journaling ActionRunner, grouping, dedup, resolved
notifications, metrics, and the outbox surviving a receiver outage and a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from empire.agent.alerting.outbox import Backoff
from empire.agent.alerting.receivers import build_receivers
from empire.agent.alerting.service import AlertService
from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.agent.records import ActionState
from empire.agent.types import Alert, OutcomeStatus, Reason
from empire.policies.alerting import AlertingPolicy
from empire.state.alerts import SqlAlertStore
from empire.state.database import Database
from empire.state.store import SqlStateStore
from fakes.server import free_port
from fakes.webhook import FakeWebhook

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def alerting_policy() -> AlertingPolicy:
    return AlertingPolicy.model_validate(
        {
            "receivers": [
                {"name": "slack-oncall", "slack": {"webhook_url": {"env": "EMPIRE_TEST_HOOK"}}},
                {"name": "dashboard", "dashboard": {}},
            ],
            "route": {"receiver": "dashboard", "group_by": ["alertname", "target"], "group_wait": "30s",
                      "group_interval": "5m", "repeat_interval": "4h",
                      "routes": [{"matchers": ['severity="critical"'], "receiver": "slack-oncall"}]},
        }
    )  # fmt: skip


def alert(name: str = "api-slow", severity: str = "critical", resolved: bool = False, value: float = 41.0) -> Alert:
    labels = {"alertname": name, "target": "api", "signal": "latency", "severity": severity}
    return Alert(name, severity, labels, f"{name}: p95 {value}s", (Reason.threshold,), value, resolved,
                 {"summary": f"{name}: p95 {value}s", "explain": "empire explain api"})  # fmt: skip


def title(body: dict[str, str]) -> str:
    return body["text"].split("*")[1].removesuffix(" (target=api)")


class Harness:
    def __init__(self, db: Database, hook_url: str, clock: FakeClock, client: httpx.AsyncClient) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        self.monitor = Monitor(self.registry)
        self.store = SqlAlertStore(db)
        policy = alerting_policy()
        self.service = AlertService(
            self.store, policy, build_receivers(policy, client, lambda ref: hook_url), clock, self.monitor,
            backoff=Backoff(base=2.0, cap=60.0), send_timeout=5.0,
        )  # fmt: skip
        self.runner = ActionRunner(SqlStateStore(db), {"alert": self.service.executor}, clock, self.monitor)

    async def tick(self, seconds: float = 0) -> tuple[int, Any]:
        self.clock.advance(seconds)
        p = await self.service.dispatch_once()
        report = await self.service.deliver_once()
        return len(p.notifications), report

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient() as c:
        yield c


async def test_alert_action_to_slack_once_then_resolved(database: Database, client: httpx.AsyncClient) -> None:
    hook = FakeWebhook()
    with hook.serve() as base:
        h = Harness(database, f"{base}/hook", FakeClock(T0), client)
        out = await h.runner.run(alert())
        assert out.status == OutcomeStatus.applied
        [journal] = await SqlStateStore(database).recent_actions()
        assert (journal.kind, journal.reason, journal.state) == ("alert", "threshold", ActionState.applied)
        h.clock.advance(15)
        again = await h.runner.run(alert(value=44.0))  # fires again while firing: deduplicated
        assert again.status == OutcomeStatus.unchanged
        assert await h.tick(10) == (0, await h.service.deliver_once())  # group_wait not over yet
        n, report = await h.tick(10)  # 35 s after the first alert
        assert (n, report.sent) == (1, 1)
        assert h.sample("empire_alerts_firing", severity="critical", rule="api-slow") == 1
        assert h.sample("empire_alert_notifications_total", receiver="slack-oncall", result="sent") == 1
        for _ in range(10):  # 50 minutes of flushes: nothing new to say
            assert (await h.tick(300))[0] == 0
        await h.runner.run(alert(resolved=True, value=12.0))
        n, report = await h.tick(300)
        assert (n, report.sent) == (1, 1)
        [firing, resolved] = hook.bodies
        assert firing["text"].startswith("*[FIRING:1] api-slow (target=api)*") and "p95 44.0s" in firing["text"]
        assert resolved["text"].startswith("*[RESOLVED:1] api-slow (target=api)*")
        assert h.sample("empire_alerts_firing", severity="critical", rule="api-slow") is None
        rows = await h.store.list_alerts(state=None)
        assert [(r.status, r.value) for r in rows] == [("resolved", 12.0)]


async def test_outbox_survives_receiver_outage_and_delivers_exactly_once(
    database: Database, client: httpx.AsyncClient
) -> None:
    hook = FakeWebhook()
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    h = Harness(database, url, FakeClock(T0), client)
    await h.runner.run(alert())
    n, report = await h.tick(31)  # the receiver is down
    assert (n, report.sent, report.retried) == (1, 0, 1)
    assert h.sample("empire_alert_outbox_depth", receiver="slack-oncall") == 1
    await h.runner.run(alert(resolved=True))
    n, report = await h.tick(300)  # still down: the resolved one queues behind the firing one
    assert (n, report.sent) == (1, 0)
    [second, first] = await h.store.notifications()
    assert (first.state, first.attempts, second.state) == ("pending", 2, "pending")
    assert "unreachable" in (first.last_error or "") and url not in (first.last_error or "")
    with hook.serve(port):
        n, report = await h.tick(1)  # backoff not over: nothing is sent early
        assert report.sent == 0 and report.next_attempt_at is not None
        h.clock.advance((report.next_attempt_at - h.clock.now()).total_seconds())
        n, report = await h.tick()
        assert report.sent == 2
        for _ in range(5):
            assert (await h.tick(600))[1].sent == 0
    assert [title(b) for b in hook.bodies] == ["[FIRING:1] api-slow", "[RESOLVED:1] api-slow"]
    assert {i.state for i in await h.store.notifications()} == {"sent"}
    assert h.sample("empire_alert_outbox_depth", receiver="slack-oncall") == 0
    assert h.sample("empire_alert_notifications_total", receiver="slack-oncall", result="retried") == 2


async def test_restart_delivers_what_was_queued_and_does_not_repeat_what_was_sent(
    database: Database, client: httpx.AsyncClient
) -> None:
    hook = FakeWebhook()
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    clock = FakeClock(T0)
    h = Harness(database, url, clock, client)
    await h.runner.run(alert("api-slow"))
    await h.runner.run(alert("api-errors"))
    with hook.serve(port):
        await h.tick(31)  # both delivered
    await h.runner.run(alert("api-down"))
    await h.tick(31)  # queued, receiver down, then the daemon "crashes"
    assert len(hook.bodies) == 2
    h2 = Harness(database, url, clock, client)  # a fresh process: empty memory, same DB
    with hook.serve(port):
        clock.advance(120)
        for _ in range(6):
            await h2.tick(60)
    assert sorted(title(b) for b in hook.bodies) == [
        "[FIRING:1] api-down", "[FIRING:1] api-errors", "[FIRING:1] api-slow",
    ]  # fmt: skip


async def test_permanent_failure_is_marked_failed_and_does_not_block(
    database: Database, client: httpx.AsyncClient
) -> None:
    hook = FakeWebhook()
    with hook.serve() as base:
        h = Harness(database, f"{base}/hook", FakeClock(T0), client)
        hook.fail_next(404, body="no_service")
        await h.runner.run(alert("a"))
        await h.runner.run(alert("b"))
        n, report = await h.tick(31)
    assert (n, report.failed, report.sent) == (2, 1, 1)
    states = sorted((i.state, i.last_error or "") for i in await h.store.notifications())
    assert states[0][0] == "failed" and "HTTP 404: no_service" in states[0][1] and states[1] == ("sent", "")
    assert h.sample("empire_alert_notifications_total", receiver="slack-oncall", result="failed") == 1


async def test_retry_after_is_honoured_and_gives_up_after_a_day(database: Database, client: httpx.AsyncClient) -> None:
    hook = FakeWebhook()
    with hook.serve() as base:
        h = Harness(database, f"{base}/hook", FakeClock(T0), client)
        hook.fail_next(429, retry_after=45)
        await h.runner.run(alert())
        _, report = await h.tick(31)
        assert report.next_attempt_at == h.clock.now() + timedelta(seconds=45)
        hook.fail_next(503, times=10_000)
        h.clock.advance(45)
        for _ in range(30):
            _, report = await h.tick(3600)
            if report.failed:
                break
    item = (await h.store.notifications())[-1]  # the first one; repeats (every 4 h) queued behind it
    assert item.state == "failed" and item.last_error and item.last_error.startswith("gave up after")
    assert item.created_at == T0 + timedelta(seconds=31)
    assert hook.bodies == []


async def test_dashboard_receiver_and_executor_read_back(database: Database, client: httpx.AsyncClient) -> None:
    h = Harness(database, "http://127.0.0.1:9/unused", FakeClock(T0), client)
    await h.runner.run(alert("disk", severity="info"))
    n, report = await h.tick(31)
    assert (n, report.sent) == (1, 1)
    [item] = await h.store.notifications()
    assert (item.receiver, item.state) == ("dashboard", "sent")
    [rec] = await SqlStateStore(database).recent_actions()
    assert (await h.service.executor.read_back(rec)).applied is True


class Leader:
    name, reason = "stub", ""

    def __init__(self, leading: bool) -> None:
        self.is_leader = leading

    async def ensure(self) -> bool:
        return self.is_leader

    async def release(self) -> None:
        return None


async def test_background_tasks_deliver_promptly_and_only_on_the_leader(
    database: Database, client: httpx.AsyncClient
) -> None:
    from empire.agent.clock import SystemClock

    hook = FakeWebhook()
    policy = AlertingPolicy.model_validate(
        {"receivers": [{"name": "slack-oncall", "slack": {"webhook_url": {"env": "UNUSED"}}}],
         "route": {"receiver": "slack-oncall", "group_wait": "0s", "group_interval": "1m"}}
    )  # fmt: skip
    leader = Leader(False)
    with hook.serve() as base:
        store = SqlAlertStore(database)
        svc = AlertService(store, policy, build_receivers(policy, client, lambda ref: f"{base}/hook"), SystemClock(),
                           Monitor(CollectorRegistry()), leader=leader, poll=0.2)  # fmt: skip
        async with anyio.create_task_group() as tg:
            await tg.start(svc.run)
            await svc.executor.execute(alert())
            await anyio.sleep(1.0)  # a standby replica records nothing, sends nothing
            assert hook.bodies == [] and await store.notifications() == []
            leader.is_leader = True
            for _ in range(200):  # the webhook runs in another thread: poll it (10 s at most)
                if hook.bodies:
                    break
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert len(hook.bodies) == 1 and [i.state for i in await store.notifications()] == ["sent"]
