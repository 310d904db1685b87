"""`MemoryAlertStore`: the in-process twin of the alerting area's `AlertStore` port.

It passes the same contract suite as `empire.state.alerts.SqlAlertStore` (tests/contract/
test_alert_store.py), so the alert pipeline (rules job, dispatcher, outbox) can be driven in a unit
test on a fake clock. Not for production: nothing here survives a restart or is shared.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from empire.agent.alerting.dispatch import LogEntry
from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.muting import Silence
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.alerting.store import OutboxItem, log_entry
from empire.agent.types import Alert
from empire.errors import ConfigError, NotFoundError

__all__ = ["MemoryAlertStore"]


class MemoryAlertStore:
    def __init__(self) -> None:
        self._alerts: list[AlertInstance] = []  # by id (= position + 1)
        self._silences: dict[str, Silence] = {}
        self._outbox: list[OutboxItem] = []  # by id (= position + 1)

    # -- alerts ----------------------------------------------------------------------------

    def _firing(self, fp: str) -> int | None:
        return next((i for i, a in enumerate(self._alerts) if a.fingerprint == fp and a.firing), None)

    async def fire(self, alert: Alert, now: datetime) -> bool:
        fp = fingerprint(alert.labels)
        i = self._firing(fp)
        if i is not None:
            self._alerts[i] = replace(self._alerts[i], value=alert.value, annotations=dict(alert.annotations),
                                      updated_at=now)  # fmt: skip
            return False
        self._alerts.append(AlertInstance(
            fingerprint=fp, rule=alert.rule, severity=alert.severity, labels=dict(alert.labels),
            annotations=dict(alert.annotations), starts_at=now, ends_at=None, value=alert.value, updated_at=now,
            id=len(self._alerts) + 1,
        ))  # fmt: skip
        return True

    async def resolve(self, alert: Alert, now: datetime) -> bool:
        i = self._firing(fingerprint(alert.labels))
        if i is None:
            return False
        self._alerts[i] = replace(self._alerts[i], ends_at=now, updated_at=now, value=alert.value,
                                  annotations=dict(alert.annotations))  # fmt: skip
        return True

    async def latest(self, fp: str) -> AlertInstance | None:
        mine = [a for a in self._alerts if a.fingerprint == fp]
        return max(mine, key=lambda a: a.starts_at) if mine else None

    async def current_alerts(self, resolved_since: datetime) -> list[AlertInstance]:
        return [a for a in self._alerts if a.firing or (a.ends_at is not None and a.ends_at >= resolved_since)]

    async def list_alerts(
        self, state: str | None = "firing", target: str | None = None, limit: int = 100
    ) -> list[AlertInstance]:
        rows = sorted(self._alerts, key=lambda a: (a.starts_at, a.id or 0), reverse=True)
        rows = [a for a in rows if state is None or state == "" or a.status == state][:limit]
        return [a for a in rows if target is None or a.labels.get("target") == target]

    # -- silences --------------------------------------------------------------------------

    async def add_silence(
        self,
        matchers: Sequence[str],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        now: datetime,
    ) -> Silence:
        if ends_at <= starts_at:
            raise ConfigError("a silence must end after it starts")
        s = Silence(uuid.uuid4().hex, tuple(matchers), starts_at, ends_at, created_by, comment, now)
        self._silences[s.id] = s
        return s

    async def silences(self, now: datetime, include_expired: bool = False) -> list[Silence]:
        rows = sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))
        return [s for s in rows if include_expired or s.ends_at > now]

    async def expire_silence(self, id_or_prefix: str, now: datetime) -> Silence:
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise ConfigError("give a silence id (see 'empire silence list')")
        rows = [s for s in self._silences.values() if s.id.startswith(prefix)]
        if not rows:
            raise NotFoundError(f"no silence with id {id_or_prefix!r} (see 'empire silence list --all')")
        if len(rows) > 1:
            raise ConfigError(f"silence id {id_or_prefix!r} is ambiguous ({len(rows)} match): give more of it")
        found = rows[0]
        if found.ends_at <= now:
            return found
        ended = replace(found, starts_at=min(found.starts_at, now), ends_at=now)
        self._silences[found.id] = ended
        return ended

    # -- the outbox ------------------------------------------------------------------------

    async def enqueue(self, notifications: Sequence[Notification], now: datetime) -> list[int]:
        ids = []
        for n in notifications:
            item = OutboxItem(id=len(self._outbox) + 1, receiver=n.receiver, group_key=n.group_key,
                              payload=n.payload(), state="pending", attempts=0, next_attempt_at=now,
                              created_at=now)  # fmt: skip
            self._outbox.append(item)
            ids.append(item.id)
        return ids

    async def pending(self, limit: int = 500) -> list[OutboxItem]:
        return [i for i in self._outbox if i.state == "pending"][:limit]

    async def notifications(self, receiver: str | None = None, limit: int = 100) -> list[OutboxItem]:
        return [i for i in reversed(self._outbox) if not receiver or i.receiver == receiver][:limit]

    def _update_pending(self, item_id: int, **values: object) -> bool:
        if not 1 <= item_id <= len(self._outbox) or self._outbox[item_id - 1].state != "pending":
            return False
        self._outbox[item_id - 1] = replace(self._outbox[item_id - 1], **values)  # type: ignore[arg-type]
        return True

    async def mark_sent(self, item_id: int, attempts: int, now: datetime) -> bool:
        return self._update_pending(item_id, state="sent", sent_at=now, attempts=attempts, last_error=None)

    async def mark_retry(self, item_id: int, attempts: int, next_attempt_at: datetime, error: str) -> None:
        self._update_pending(item_id, attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:2000])

    async def mark_failed(self, item_id: int, attempts: int, error: str) -> None:
        self._update_pending(item_id, state="failed", attempts=attempts, last_error=error[:2000])

    async def outbox_depth(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self._outbox:
            if i.state == "pending":
                out[i.receiver] = out.get(i.receiver, 0) + 1
        return out

    async def notification_log(self, since: datetime) -> dict[tuple[str, str], LogEntry]:
        out: dict[tuple[str, str], LogEntry] = {}
        for i in self._outbox:  # by id: the newest per (receiver, group) wins
            if i.created_at >= since:
                out[(i.receiver, i.group_key)] = log_entry(i.payload, i.created_at)
        return out
