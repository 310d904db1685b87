"""`SqlAlertStore`: the alerting area's `AlertStore` port in the state DB (SQLite or PostgreSQL).

Why the database and not memory: an alert must survive the things it reports (a crash, a restart,
a receiver outage). The `alerts` table is the dashboard's source and the rule state's restart
point; the `notifications` table is an outbox (a notification is written before delivery is
tried, in the dispatcher's pass, and marked `sent` only after the receiver accepted it), and its
newest row per receiver and group doubles as the notification log that deduplicates across
restarts; the `silences` table is shared with the CLI, which may run on another machine.

Deduplication by fingerprint: at most one *firing* row per fingerprint (a unique index). Firing an
alert that is already firing refreshes it (value, annotations) instead of adding a row; firing it
again after it resolved starts a new episode (a new row, a new `starts_at`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from empire.agent.alerting.dispatch import LogEntry
from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.muting import Silence
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.alerting.store import OutboxItem, log_entry
from empire.agent.types import Alert
from empire.errors import ConfigError, NotFoundError
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlAlertStore"]


def _alert(row: Any) -> AlertInstance:
    return AlertInstance(
        fingerprint=row.fingerprint, rule=row.rule, severity=row.severity, labels=dict(row.labels),
        annotations=dict(row.annotations), starts_at=row.starts_at, ends_at=row.ends_at, value=row.value,
        updated_at=row.updated_at, id=row.id,
    )  # fmt: skip


def _silence(row: Any) -> Silence:
    return Silence(row.id, tuple(row.matchers), row.starts_at, row.ends_at, row.created_by, row.comment or "",
                   row.created_at)  # fmt: skip


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=row.id, receiver=row.receiver, group_key=row.group_key, payload=dict(row.payload), state=row.state,
        attempts=row.attempts, next_attempt_at=row.next_attempt_at, created_at=row.created_at,
        last_error=row.last_error, sent_at=row.sent_at,
    )  # fmt: skip


class SqlAlertStore:
    """`AlertStore` in the state DB: tables `alerts`, `silences` and `notifications`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- alerts ----------------------------------------------------------------------------

    async def fire(self, alert: Alert, now: datetime) -> bool:
        """Store a firing alert; True when it starts a new episode, False when it refreshed one."""
        fp = fingerprint(alert.labels)
        a = t.alerts.c
        async with self.db.begin() as conn:
            row = (await conn.execute(select(a.id).where(and_(a.fingerprint == fp, a.state == "firing")))).first()
            if row is not None:
                await conn.execute(
                    update(t.alerts).where(a.id == row.id)
                    .values(value=alert.value, annotations=dict(alert.annotations), updated_at=now)
                )  # fmt: skip
                return False
            try:
                await conn.execute(
                    insert(t.alerts).values(
                        fingerprint=fp, rule=alert.rule, severity=alert.severity, labels=dict(alert.labels),
                        annotations=dict(alert.annotations), state="firing", value=alert.value, starts_at=now,
                        ends_at=None, updated_at=now,
                    )
                )  # fmt: skip
            except IntegrityError:  # the same episode written twice at the same instant
                return False
        return True

    async def resolve(self, alert: Alert, now: datetime) -> bool:
        """Resolve the firing episode of this alert's fingerprint; False when none was firing."""
        fp = fingerprint(alert.labels)
        a = t.alerts.c
        async with self.db.begin() as conn:
            res = await conn.execute(
                update(t.alerts).where(and_(a.fingerprint == fp, a.state == "firing"))
                .values(state="resolved", ends_at=now, updated_at=now, value=alert.value,
                        annotations=dict(alert.annotations))
            )  # fmt: skip
        return bool(res.rowcount)

    async def latest(self, fp: str) -> AlertInstance | None:
        q = select(t.alerts).where(t.alerts.c.fingerprint == fp).order_by(t.alerts.c.starts_at.desc()).limit(1)
        async with self.db.connect() as conn:
            row = (await conn.execute(q)).first()
        return _alert(row) if row else None

    async def current_alerts(self, resolved_since: datetime) -> list[AlertInstance]:
        """Firing alerts, and alerts resolved at or after `resolved_since` (still to be reported)."""
        a = t.alerts.c
        q = select(t.alerts).where(or_(a.state == "firing", a.ends_at >= resolved_since)).order_by(a.id)
        async with self.db.connect() as conn:
            return [_alert(r) for r in (await conn.execute(q)).all()]

    async def list_alerts(self, state: str | None = "firing", target: str | None = None,
                          limit: int = 100) -> list[AlertInstance]:  # fmt: skip
        a = t.alerts.c
        q = select(t.alerts).order_by(a.starts_at.desc(), a.id.desc()).limit(limit)
        if state:
            q = q.where(a.state == state)
        async with self.db.connect() as conn:
            rows = [_alert(r) for r in (await conn.execute(q)).all()]
        return [r for r in rows if target is None or r.labels.get("target") == target]

    # -- silences --------------------------------------------------------------------------

    async def add_silence(self, matchers: Sequence[str], starts_at: datetime, ends_at: datetime, created_by: str,
                          comment: str, now: datetime) -> Silence:  # fmt: skip
        if ends_at <= starts_at:
            raise ConfigError("a silence must end after it starts")
        s = Silence(uuid.uuid4().hex, tuple(matchers), starts_at, ends_at, created_by, comment, now)
        async with self.db.begin() as conn:
            await conn.execute(
                insert(t.silences).values(id=s.id, matchers=list(s.matchers), starts_at=s.starts_at,
                                          ends_at=s.ends_at, created_by=s.created_by, comment=s.comment,
                                          created_at=s.created_at)
            )  # fmt: skip
        return s

    async def silences(self, now: datetime, include_expired: bool = False) -> list[Silence]:
        s = t.silences.c
        q = select(t.silences).order_by(s.starts_at, s.id)
        if not include_expired:
            q = q.where(s.ends_at > now)
        async with self.db.connect() as conn:
            return [_silence(r) for r in (await conn.execute(q)).all()]

    async def expire_silence(self, id_or_prefix: str, now: datetime) -> Silence:
        """End a silence now (by id or a unique id prefix); an already ended one is left as it is."""
        s = t.silences.c
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise ConfigError("give a silence id (see 'empire silence list')")
        async with self.db.begin() as conn:
            rows = (await conn.execute(select(t.silences).where(s.id.startswith(prefix, autoescape=True)))).all()
            if not rows:
                raise NotFoundError(f"no silence with id {id_or_prefix!r} (see 'empire silence list --all')")
            if len(rows) > 1:
                raise ConfigError(f"silence id {id_or_prefix!r} is ambiguous ({len(rows)} match): give more of it")
            found = _silence(rows[0])
            if found.ends_at <= now:
                return found
            start = min(found.starts_at, now)
            await conn.execute(update(t.silences).where(s.id == found.id).values(ends_at=now, starts_at=start))
        return Silence(found.id, found.matchers, start, now, found.created_by, found.comment, found.created_at)

    # -- the outbox ------------------------------------------------------------------------

    async def enqueue(self, notifications: Sequence[Notification], now: datetime) -> list[int]:
        """Queue notifications for delivery, in one transaction (all or none)."""
        if not notifications:
            return []
        ids = []
        async with self.db.begin() as conn:
            for n in notifications:
                res = await conn.execute(
                    insert(t.notifications).values(
                        receiver=n.receiver, group_key=n.group_key, payload=n.payload(), state="pending",
                        attempts=0, next_attempt_at=now, created_at=now,
                    ).returning(t.notifications.c.id)
                )  # fmt: skip
                ids.append(int(res.scalar_one()))
        return ids

    async def pending(self, limit: int = 500) -> list[OutboxItem]:
        n = t.notifications.c
        q = select(t.notifications).where(n.state == "pending").order_by(n.id).limit(limit)
        async with self.db.connect() as conn:
            return [_item(r) for r in (await conn.execute(q)).all()]

    async def notifications(self, receiver: str | None = None, limit: int = 100) -> list[OutboxItem]:
        n = t.notifications.c
        q = select(t.notifications).order_by(n.id.desc()).limit(limit)
        if receiver:
            q = q.where(n.receiver == receiver)
        async with self.db.connect() as conn:
            return [_item(r) for r in (await conn.execute(q)).all()]

    async def mark_sent(self, item_id: int, attempts: int, now: datetime) -> bool:
        """Mark delivered; only a pending row changes, so a late duplicate cannot flip a result."""
        n = t.notifications.c
        async with self.db.begin() as conn:
            res = await conn.execute(
                update(t.notifications).where(and_(n.id == item_id, n.state == "pending"))
                .values(state="sent", sent_at=now, attempts=attempts, last_error=None)
            )  # fmt: skip
        return bool(res.rowcount)

    async def mark_retry(self, item_id: int, attempts: int, next_attempt_at: datetime, error: str) -> None:
        n = t.notifications.c
        async with self.db.begin() as conn:
            await conn.execute(
                update(t.notifications).where(and_(n.id == item_id, n.state == "pending"))
                .values(attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:2000])
            )  # fmt: skip

    async def mark_failed(self, item_id: int, attempts: int, error: str) -> None:
        n = t.notifications.c
        async with self.db.begin() as conn:
            await conn.execute(
                update(t.notifications).where(and_(n.id == item_id, n.state == "pending"))
                .values(state="failed", attempts=attempts, last_error=error[:2000])
            )  # fmt: skip

    async def outbox_depth(self) -> dict[str, int]:
        n = t.notifications.c
        q = select(n.receiver, func.count()).where(n.state == "pending").group_by(n.receiver)
        async with self.db.connect() as conn:
            return {r[0]: int(r[1]) for r in (await conn.execute(q)).all()}

    async def notification_log(self, since: datetime) -> dict[tuple[str, str], LogEntry]:
        """The newest notification per (receiver, group) queued since `since`: the dispatcher's memory."""
        n = t.notifications.c
        newest = (
            select(func.max(n.id).label("id")).where(n.created_at >= since)
            .group_by(n.receiver, n.group_key).subquery()
        )  # fmt: skip
        q = select(n.receiver, n.group_key, n.payload, n.created_at).join(newest, n.id == newest.c.id)
        out: dict[tuple[str, str], LogEntry] = {}
        async with self.db.connect() as conn:
            for row in (await conn.execute(q)).all():
                out[(row.receiver, row.group_key)] = log_entry(row.payload, row.created_at)
        return out
