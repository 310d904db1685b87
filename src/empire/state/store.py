"""`SqlStateStore`: the journal, decisions, policy versions, model registry and audit trail in SQL.

The same statements run on SQLite and PostgreSQL. Writes that may be retried are idempotent:
an action intent is keyed by its idempotency key, so writing the same intent twice (a retry after
a lost reply, or a second replica racing) returns the first row instead of creating another.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from empire.agent.records import ActionRecord, ActionState, AuditRecord, DecisionRecord, ModelRecord
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlStateStore"]

UNFINISHED = (ActionState.intent,)


def _decision(row: Any) -> DecisionRecord:
    return DecisionRecord(
        id=row.id, target=row.target, at=row.at, current=row.current, recommended=row.recommended,
        desired=row.desired, reasons=tuple(row.reasons), details=dict(row.details),
        policy_version=row.policy_version, replica=row.replica, dry_run=bool(row.dry_run),
    )  # fmt: skip


def _action(row: Any) -> ActionRecord:
    return ActionRecord(
        id=row.id, idempotency_key=row.idempotency_key, kind=row.kind, subject=row.subject,
        params=dict(row.params), reason=row.reason, state=ActionState(row.state), error=row.error,
        decision_id=row.decision_id, replica=row.replica, created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


def _model(row: Any) -> ModelRecord:
    return ModelRecord(
        id=row.id, name=row.name, kind=row.kind, params=dict(row.params), metrics=dict(row.metrics),
        blob=row.blob, in_use=bool(row.in_use), created_at=row.created_at,
    )  # fmt: skip


def _values(rec: Any) -> dict[str, Any]:
    values = dataclasses.asdict(rec)
    values.pop("id", None)
    return values


class SqlStateStore:
    """The `StateStore` port over a `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record_decision(self, rec: DecisionRecord) -> int:
        values = _values(rec)
        values["reasons"] = list(rec.reasons)
        async with self.db.begin() as conn:
            result = await conn.execute(insert(t.decisions).values(**values).returning(t.decisions.c.id))
            return int(result.scalar_one())

    async def recent_decisions(self, target: str | None = None, limit: int = 20) -> list[DecisionRecord]:
        q = select(t.decisions).order_by(t.decisions.c.at.desc(), t.decisions.c.id.desc()).limit(limit)
        if target is not None:
            q = q.where(t.decisions.c.target == target)
        async with self.db.connect() as conn:
            return [_decision(r) for r in (await conn.execute(q)).all()]

    async def write_intent(self, rec: ActionRecord) -> ActionRecord:
        """Insert an intent; if its idempotency key exists already, return the existing row."""
        values = _values(rec)
        values["state"] = ActionState.intent.value
        try:
            async with self.db.begin() as conn:
                new_id = (await conn.execute(insert(t.actions).values(**values).returning(t.actions.c.id))).scalar_one()
            return dataclasses.replace(rec, id=int(new_id), state=ActionState.intent)
        except IntegrityError:
            existing = await self.action_by_key(rec.idempotency_key)
            assert existing is not None
            return existing

    async def action_by_key(self, key: str) -> ActionRecord | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(t.actions).where(t.actions.c.idempotency_key == key))).first()
        return _action(row) if row else None

    async def finish_action(self, action_id: int, state: ActionState, at: datetime, error: str | None = None) -> None:
        """Settle an intent. Only an unfinished action changes, so a late duplicate cannot undo a result."""
        async with self.db.begin() as conn:
            await conn.execute(
                update(t.actions)
                .where(and_(t.actions.c.id == action_id, t.actions.c.state.in_([s.value for s in UNFINISHED])))
                .values(state=state.value, error=error, updated_at=at)
            )

    async def unfinished_actions(self) -> list[ActionRecord]:
        q = select(t.actions).where(t.actions.c.state.in_([s.value for s in UNFINISHED])).order_by(t.actions.c.id)
        async with self.db.connect() as conn:
            return [_action(r) for r in (await conn.execute(q)).all()]

    async def recent_actions(self, subject: str | None = None, limit: int = 20) -> list[ActionRecord]:
        q = select(t.actions).order_by(t.actions.c.id.desc()).limit(limit)
        if subject is not None:
            q = q.where(t.actions.c.subject == subject)
        async with self.db.connect() as conn:
            return [_action(r) for r in (await conn.execute(q)).all()]

    async def save_policy_version(
        self, version: str, source: str, body: dict[str, Any], at: datetime, applied: bool = True
    ) -> bool:
        """Record a policy version; True when it was new. Re-applying a known version stamps it (and
        its new source). Applied times strictly increase, so "the latest applied" is never a tie even
        when two applies share a clock reading."""
        async with self.db.begin() as conn:
            if applied:
                newest = (await conn.execute(select(func.max(t.policy_versions.c.applied_at)))).scalar()
                if newest is not None and newest >= at:
                    at = newest + timedelta(microseconds=1)
            exists = (
                await conn.execute(select(t.policy_versions.c.version).where(t.policy_versions.c.version == version))
            ).first()
            if exists:
                if applied:
                    await conn.execute(
                        update(t.policy_versions)
                        .where(t.policy_versions.c.version == version)
                        .values(applied_at=at, source=source)
                    )
                return False
            await conn.execute(
                insert(t.policy_versions).values(
                    version=version,
                    source=source,
                    body=body,
                    created_at=at,
                    applied_at=at if applied else None,
                )
            )
            return True

    async def policy_version(self, version: str) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(t.policy_versions).where(t.policy_versions.c.version == version))).first()
        return dict(row._mapping) if row else None

    async def latest_policy_version(self) -> dict[str, Any] | None:
        q = select(t.policy_versions).where(t.policy_versions.c.applied_at.is_not(None))
        q = q.order_by(t.policy_versions.c.applied_at.desc()).limit(1)
        async with self.db.connect() as conn:
            row = (await conn.execute(q)).first()
        return dict(row._mapping) if row else None

    async def save_model(self, rec: ModelRecord) -> int:
        """Store a fitted model; when it is `in_use`, earlier versions of the same name stop being used."""
        async with self.db.begin() as conn:
            if rec.in_use:
                await conn.execute(
                    update(t.model_registry).where(t.model_registry.c.name == rec.name).values(in_use=False)
                )
            result = await conn.execute(
                insert(t.model_registry).values(**_values(rec)).returning(t.model_registry.c.id)
            )
            return int(result.scalar_one())

    async def latest_model(self, name: str, in_use_only: bool = True) -> ModelRecord | None:
        q = select(t.model_registry).where(t.model_registry.c.name == name)
        if in_use_only:
            q = q.where(t.model_registry.c.in_use.is_(True))
        q = q.order_by(t.model_registry.c.created_at.desc(), t.model_registry.c.id.desc()).limit(1)
        async with self.db.connect() as conn:
            row = (await conn.execute(q)).first()
        return _model(row) if row else None

    async def audit(self, rec: AuditRecord) -> int:
        async with self.db.begin() as conn:
            result = await conn.execute(insert(t.audit).values(**_values(rec)).returning(t.audit.c.id))
            return int(result.scalar_one())

    async def recent_audit(
        self, limit: int = 50, actor: str | None = None, action: str | None = None
    ) -> list[AuditRecord]:
        q = select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
        if actor is not None:
            q = q.where(t.audit.c.actor == actor)
        if action is not None:
            q = q.where(t.audit.c.action == action)
        async with self.db.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            AuditRecord(id=r.id, at=r.at, actor=r.actor, action=r.action, subject=r.subject, details=dict(r.details))
            for r in rows
        ]

    async def prune(
        self,
        *,
        decisions_before: datetime | None = None,
        actions_before: datetime | None = None,
        audit_before: datetime | None = None,
        models_kept: int | None = None,
    ) -> dict[str, int]:
        """Delete history older than the cutoffs; keep the in-use model and the newest `models_kept`
        per name. Unfinished intents are never deleted (restart reconciliation needs them)."""
        counts: dict[str, int] = {}
        async with self.db.begin() as conn:
            if decisions_before is not None:
                r = await conn.execute(delete(t.decisions).where(t.decisions.c.at < decisions_before))
                counts["decisions"] = r.rowcount or 0
            if actions_before is not None:
                r = await conn.execute(
                    delete(t.actions).where(
                        t.actions.c.updated_at < actions_before,
                        t.actions.c.state.not_in([s.value for s in UNFINISHED]),
                    )
                )
                counts["actions"] = r.rowcount or 0
            if audit_before is not None:
                r = await conn.execute(delete(t.audit).where(t.audit.c.at < audit_before))
                counts["audit"] = r.rowcount or 0
            if models_kept is not None:
                m = t.model_registry.c
                ranked = select(
                    m.id,
                    m.in_use,
                    func.row_number()
                    .over(partition_by=m.name, order_by=(m.created_at.desc(), m.id.desc()))
                    .label("rn"),
                ).subquery()
                doomed = select(ranked.c.id).where(ranked.c.rn > models_kept, ranked.c.in_use.is_(False))
                r = await conn.execute(delete(t.model_registry).where(m.id.in_(doomed)))
                counts["models"] = r.rowcount or 0
        return counts
