"""The alert pipeline without a database: rules' Alert actions -> journal -> store -> dispatcher -> outbox
-> receiver, on the stores' in-memory twins and a fake clock (the same path tests/integration/
test_alert_outbox.py drives on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from empire.agent.alerting.memory import MemoryAlertStore
from empire.agent.alerting.notification import Notification
from empire.agent.alerting.service import AlertService
from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.agent.types import Alert, OutcomeStatus, Reason
from empire.policies.alerting import AlertingPolicy
from empire.state.memory import MemoryStateStore

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Recorder:
    """An `AlertSink` that keeps what it is sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)

    async def aclose(self) -> None:
        pass


def alert(resolved: bool = False, value: float = 41.0) -> Alert:
    labels = {"alertname": "api-slow", "target": "api", "severity": "critical"}
    return Alert("api-slow", "critical", labels, "p95 slow", (Reason.threshold,), value, resolved)


async def test_an_alert_reaches_its_receiver_once_then_resolves() -> None:
    policy = AlertingPolicy.model_validate({
        "receivers": [{"name": "oncall", "dashboard": {}}],
        "route": {"receiver": "oncall", "group_by": ["alertname"], "group_wait": "30s", "group_interval": "5m",
                  "repeat_interval": "4h"},
    })  # fmt: skip
    clock, monitor, store, sink = FakeClock(T0), Monitor(CollectorRegistry()), MemoryAlertStore(), Recorder("oncall")
    service = AlertService(store, policy, {"oncall": sink}, clock, monitor)
    runner = ActionRunner(MemoryStateStore(), {"alert": service.executor}, clock, monitor)

    assert (await runner.run(alert())).status is OutcomeStatus.applied
    clock.advance(15)
    assert (await runner.run(alert(value=44.0))).status is OutcomeStatus.unchanged  # deduplicated
    for seconds in (10, 10, 300, 300):  # group_wait, then flushes with nothing new to say
        clock.advance(seconds)
        await service.dispatch_once()
        await service.deliver_once()
    assert [(n.status, n.alerts[0].value) for n in sink.sent] == [("firing", 44.0)]

    await runner.run(alert(resolved=True, value=12.0))
    clock.advance(300)
    await service.dispatch_once()
    await service.deliver_once()
    assert [n.status for n in sink.sent] == ["firing", "resolved"]
    assert await store.outbox_depth() == {}
    assert [i.state for i in await store.notifications()] == ["sent", "sent"]
