"""The alerting area's executor: `Alert` actions (fired or resolved by the rules) into the alert store.

Like every area's executor it sits behind the one journaling `ActionRunner` (`<area>/executor.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from empire.agent.alerting.matching import fingerprint
from empire.agent.records import ActionRecord
from empire.agent.types import Action, Alert, Outcome, OutcomeStatus, ReadBack

if TYPE_CHECKING:
    from empire.agent.alerting.service import AlertService

__all__ = ["AlertExecutor"]


class AlertExecutor:
    """`ports.Executor` for `Alert` actions: record the alert (dedup by fingerprint), wake the dispatcher."""

    def __init__(self, service: AlertService) -> None:
        self.service = service

    async def execute(self, action: Action) -> Outcome:
        assert isinstance(action, Alert)
        svc = self.service
        now = svc.clock.now()
        fp = fingerprint(action.labels)
        if action.resolved:
            changed = await svc.store.resolve(action, now)
        else:
            changed = await svc.store.fire(action, now)
        svc.wake()
        status = OutcomeStatus.applied if changed else OutcomeStatus.unchanged
        return Outcome(status, state={"fingerprint": fp, "state": "resolved" if action.resolved else "firing"})

    async def read_back(self, record: ActionRecord) -> ReadBack:
        labels = record.params.get("labels") or {}
        latest = await self.service.store.latest(fingerprint(labels))
        want_resolved = bool(record.params.get("resolved"))
        if latest is None:
            return ReadBack(False, note="no alert row")
        applied = (not latest.firing) if want_resolved else latest.firing
        return ReadBack(applied, {"fingerprint": latest.fingerprint, "state": latest.status})
