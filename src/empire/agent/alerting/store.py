"""`AlertStore`: the alerting area's port for alerts, the notification outbox and silences.

The daemon keeps them in the state DB (`empire.state.alerts.SqlAlertStore`, which says why); the
twin (`memory.MemoryAlertStore`) lets the alert pipeline (rules job, dispatcher, outbox) run in a
unit test on a fake clock. What every implementation guarantees:

- at most one *firing* episode per fingerprint: firing an alert that is already firing refreshes it
  (value, annotations); firing it again after it resolved starts a new episode (a new `starts_at`);
- an outbox item changes only while pending (`mark_*`), so a late duplicate cannot flip a result;
- the newest item per (receiver, group) is the notification log that deduplicates across restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from empire.agent.alerting.dispatch import LogEntry
from empire.agent.alerting.muting import Silence
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.types import Alert

__all__ = ["AlertStore", "OutboxItem", "log_entry"]


@dataclass(frozen=True)
class OutboxItem:
    id: int
    receiver: str
    group_key: str
    payload: dict[str, Any]
    state: str  # pending | sent | failed
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    sent_at: datetime | None = None

    @property
    def notification(self) -> Notification:
        return Notification.from_payload(self.payload)


def log_entry(payload: dict[str, Any], created_at: datetime) -> LogEntry:
    """A queued notification's entry in the notification log: when, and which alerts it reported how."""
    alerts = payload.get("alerts") or []
    firing = frozenset(x["fingerprint"] for x in alerts if x.get("status") == "firing")
    resolved = frozenset(x["fingerprint"] for x in alerts if x.get("status") == "resolved")
    return LogEntry(created_at, firing, resolved)


class AlertStore(Protocol):
    """Alerts, silences and the notification outbox. `empire.state.alerts.SqlAlertStore` keeps them in
    the state DB (SQLite, PostgreSQL); `empire.agent.alerting.memory.MemoryAlertStore` is the in-process
    twin. `tests/contract/test_alert_store.py` runs one suite over all three."""

    # alerts
    async def fire(self, alert: Alert, now: datetime) -> bool:
        """Store a firing alert; True when it starts a new episode, False when it refreshed one."""
        ...

    async def resolve(self, alert: Alert, now: datetime) -> bool:
        """Resolve the firing episode of this alert's fingerprint; False when none was firing."""
        ...

    async def latest(self, fp: str) -> AlertInstance | None:
        """The newest episode of a fingerprint, firing or not."""
        ...

    async def current_alerts(self, resolved_since: datetime) -> list[AlertInstance]:
        """Firing alerts, and alerts resolved at or after `resolved_since` (still to be reported), oldest first."""
        ...

    async def list_alerts(
        self, state: str | None = "firing", target: str | None = None, limit: int = 100
    ) -> list[AlertInstance]:
        """Newest first; `state` None for any; `target` matches the `target` label."""
        ...

    # silences
    async def add_silence(
        self,
        matchers: Sequence[str],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        now: datetime,
    ) -> Silence:
        """A new silence (ConfigError unless it ends after it starts)."""
        ...

    async def silences(self, now: datetime, include_expired: bool = False) -> list[Silence]:
        """By start, then id; those ended at or before `now` only with `include_expired`."""
        ...

    async def expire_silence(self, id_or_prefix: str, now: datetime) -> Silence:
        """End a silence now (by id or a unique id prefix); an already ended one is left as it is.
        NotFoundError for no match, ConfigError for an empty or ambiguous prefix."""
        ...

    # the outbox
    async def enqueue(self, notifications: Sequence[Notification], now: datetime) -> list[int]:
        """Queue notifications for delivery, all or none; their ids, increasing."""
        ...

    async def pending(self, limit: int = 500) -> list[OutboxItem]:
        """Pending items, oldest first."""
        ...

    async def notifications(self, receiver: str | None = None, limit: int = 100) -> list[OutboxItem]:
        """Any state, newest first."""
        ...

    async def mark_sent(self, item_id: int, attempts: int, now: datetime) -> bool:
        """Mark delivered; only a pending row changes, so a late duplicate cannot flip a result."""
        ...

    async def mark_retry(self, item_id: int, attempts: int, next_attempt_at: datetime, error: str) -> None:
        """A pending item's next attempt (the error kept, at most 2,000 characters)."""
        ...

    async def mark_failed(self, item_id: int, attempts: int, error: str) -> None:
        """A pending item given up (the error kept, at most 2,000 characters)."""
        ...

    async def outbox_depth(self) -> dict[str, int]:
        """Pending items per receiver."""
        ...

    async def notification_log(self, since: datetime) -> dict[tuple[str, str], LogEntry]:
        """The newest notification per (receiver, group) queued since `since`: the dispatcher's memory."""
        ...
