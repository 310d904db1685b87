"""`AlertService`: the alerting side of the daemon, as two anyio tasks next to the control loop.

    loop tick ─► rules.evaluate() ─► ActionRunner ─► AlertExecutor ─► alerts table ─┐ wake
                                                                                     ▼
    dispatcher task: alerts + silences (DB) ─► dispatch.plan() ─► notifications (outbox) ─┐ wake
                                                                                          ▼
    delivery task:   outbox ─► receivers (Slack, email, Alertmanager, dashboard), retried with backoff

Why two tasks: the loop must never wait for a receiver. The executor only writes a row and wakes
the dispatcher; the dispatcher only reads and writes the DB; receivers are awaited by the delivery
task alone. Both tasks sleep until their next deadline (a group flush, a retry) or until woken,
and poll every `poll` seconds so that a silence added by the CLI in another process takes effect.
With a `LeaderElection`, only the leader dispatches and delivers; a new leader rebuilds the
notification log from the outbox first, so it does not repeat what the old one sent.

Tests and the backtest drive `dispatch_once()` / `deliver_once()` directly on a fake clock.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio

from empire.agent.alerting.dispatch import LOG_RETENTION, DispatchState, Plan, latest_by_fingerprint, plan
from empire.agent.alerting.executor import AlertExecutor
from empire.agent.alerting.metrics import AlertMetrics
from empire.agent.alerting.outbox import Backoff, DeliveryReport, Outbox
from empire.agent.alerting.ports import AlertSink
from empire.agent.alerting.routing import RouteNode, build_tree
from empire.agent.alerting.store import AlertStore
from empire.agent.monitor import Monitor
from empire.agent.ports import Clock, LeaderElection
from empire.agent.types import error_class
from empire.logrepeat import log_unless_reported
from empire.policies.alerting import AlertingPolicy

__all__ = ["AlertService"]

logger = logging.getLogger(__name__)

# Resolved alerts stay in the dispatcher's view this long (they must outlive a group's flush).
RESOLVED_RETENTION = timedelta(hours=6)


class AlertService:
    def __init__(
        self,
        store: AlertStore,
        policy: AlertingPolicy,
        receivers: Mapping[str, AlertSink],
        clock: Clock,
        monitor: Monitor | None = None,
        *,
        leader: LeaderElection | None = None,
        backoff: Backoff | None = None,
        poll: float = 5.0,
        send_timeout: float = 30.0,
        state_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        # No pass while the state DB is down: a notification sent but not marked sent in the outbox
        # would be sent again.
        self.state_up = state_up
        self.clock = clock
        self.monitor = monitor or Monitor()
        self.metrics = self.monitor.group(AlertMetrics)
        self.leader = leader
        self.poll = poll
        self.state = DispatchState()
        self.last_plan: Plan | None = None
        self._restored = False
        # Wake-ups: a flag (settable from anywhere, even before the event loop runs) plus the event
        # the task is waiting on, if it is waiting.
        self._woken = {"dispatch": False, "deliver": False}
        self._events: dict[str, anyio.Event] = {}
        self.outbox = Outbox(store, dict(receivers), clock, self.metrics, backoff, send_timeout)
        self.update_policy(policy, receivers)
        self.executor = AlertExecutor(self)

    # -- configuration -----------------------------------------------------------------------

    def update_policy(self, policy: AlertingPolicy, receivers: Mapping[str, AlertSink] | None = None) -> None:
        """Swap in a reloaded policy; groups and the notification log carry over (keys are stable)."""
        self.policy = policy
        self.tree: RouteNode = build_tree(policy.route)
        if receivers is not None:
            self.outbox.receivers = dict(receivers)
        self.wake()

    # -- one pass each (the tasks below loop over these) ------------------------------------

    async def restore(self) -> None:
        """Rebuild the notification log from the outbox (after a restart or a leadership change)."""
        now = self.clock.now()
        self.state = DispatchState({}, await self.store.notification_log(now - LOG_RETENTION))
        self._restored = True
        logger.info("alert dispatcher restored %s notification log entries", len(self.state.log))

    async def dispatch_once(self) -> Plan:
        if not self._restored:
            await self.restore()
        now = self.clock.now()
        alerts = await self.store.current_alerts(now - RESOLVED_RETENTION)
        silences = await self.store.silences(now)
        p = plan(alerts, self.tree, self.policy.inhibit_rules, silences, self.state, now)
        if p.notifications:
            await self.store.enqueue(p.notifications, now)  # before the state moves on: nothing is lost
            for n in p.notifications:
                logger.info("queued %s notification for %s: %s alert(s), group %s", n.status, n.receiver,
                            len(n.alerts), n.group_key)  # fmt: skip
            self._set("deliver")
        self.state, self.last_plan = p.state, p
        current = [a for a in latest_by_fingerprint(alerts) if a.firing]
        self.metrics.set_firing(Counter((a.severity, a.rule) for a in current))
        self.metrics.set_muted(Counter(p.muted[a.fingerprint] for a in current if a.fingerprint in p.muted))
        self.metrics.set_outbox(await self.store.outbox_depth(), [r.name for r in self.policy.receivers])
        return p

    async def deliver_once(self) -> DeliveryReport:
        report = await self.outbox.deliver_once()
        if report.sent or report.failed:
            self.metrics.set_outbox(await self.store.outbox_depth(), [r.name for r in self.policy.receivers])
        return report

    # -- the tasks ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Run the dispatcher now (a new or resolved alert, a policy reload)."""
        self._set("dispatch")

    def _set(self, which: str) -> None:
        self._woken[which] = True
        event = self._events.get(which)
        if event is not None:
            event.set()

    def _is_leader(self) -> bool:
        if self.leader is None:
            return True
        if not self.leader.is_leader:
            self._restored = False  # rebuild the log when (if) leadership comes back
            return False
        return True

    async def _sleep(self, which: str, until: datetime | None) -> None:
        """Wait until `until` (at most `poll` seconds) or until woken."""
        delay = self.poll
        if until is not None:
            delay = min(delay, max(0.0, (until - self.clock.now()).total_seconds()))
        if not self._woken[which]:
            event = self._events[which] = anyio.Event()
            with anyio.move_on_after(delay):
                await event.wait()
            self._events.pop(which, None)
        self._woken[which] = False

    async def _dispatch_loop(self) -> None:
        while True:
            until = None
            if self._is_leader() and self.state_up():
                try:
                    until = (await self.dispatch_once()).next_flush_at
                except Exception as exc:  # the DB may be down: try again at the next poll
                    log_unless_reported(logger, exc, "alert dispatcher pass failed: %s", exc)
                    self.metrics.errors.labels("dispatch", error_class(exc)).inc()
            await self._sleep("dispatch", until)

    async def _deliver_loop(self) -> None:
        while True:
            until = None
            if self._is_leader() and self.state_up():
                try:
                    until = (await self.deliver_once()).next_attempt_at
                except Exception as exc:
                    log_unless_reported(logger, exc, "alert delivery pass failed: %s", exc)
                    self.metrics.errors.labels("deliver", error_class(exc)).inc()
            await self._sleep("deliver", until)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the dispatcher and the delivery task until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._dispatch_loop)
            tg.start_soon(self._deliver_loop)
            task_status.started()

    async def aclose(self) -> None:
        for sink in self.outbox.receivers.values():
            await sink.aclose()
