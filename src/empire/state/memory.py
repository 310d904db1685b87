"""`MemoryStateStore`: the in-process twin of `SqlStateStore`, for unit tests and the backtest.

It keeps the same semantics (idempotent intents, only unfinished actions settle, newest first)
and passes the same contract suite, so code tested against it behaves the same on a database.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from empire.agent.records import ActionRecord, ActionState, AuditRecord, DecisionRecord, ModelRecord

__all__ = ["MemoryStateStore"]


class MemoryStateStore:
    def __init__(self) -> None:
        self.decisions: list[DecisionRecord] = []
        self.actions: dict[int, ActionRecord] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.models: list[ModelRecord] = []
        self.audits: list[AuditRecord] = []

    async def record_decision(self, rec: DecisionRecord) -> int:
        new_id = len(self.decisions) + 1
        self.decisions.append(dataclasses.replace(rec, id=new_id))
        return new_id

    async def recent_decisions(self, target: str | None = None, limit: int = 20) -> list[DecisionRecord]:
        rows = [d for d in self.decisions if target is None or d.target == target]
        rows.sort(key=lambda d: (d.at, d.id or 0), reverse=True)
        return rows[:limit]

    async def write_intent(self, rec: ActionRecord) -> ActionRecord:
        existing = await self.action_by_key(rec.idempotency_key)
        if existing is not None:
            return existing
        new_id = len(self.actions) + 1
        stored = dataclasses.replace(rec, id=new_id, state=ActionState.intent)
        self.actions[new_id] = stored
        return stored

    async def action_by_key(self, key: str) -> ActionRecord | None:
        return next((a for a in self.actions.values() if a.idempotency_key == key), None)

    async def finish_action(self, action_id: int, state: ActionState, at: datetime, error: str | None = None) -> None:
        current = self.actions.get(action_id)
        if current is not None and current.state == ActionState.intent:
            self.actions[action_id] = dataclasses.replace(current, state=state, error=error, updated_at=at)

    async def unfinished_actions(self) -> list[ActionRecord]:
        return [a for _, a in sorted(self.actions.items()) if a.state == ActionState.intent]

    async def recent_actions(self, subject: str | None = None, limit: int = 20) -> list[ActionRecord]:
        rows = [a for _, a in sorted(self.actions.items(), reverse=True) if subject is None or a.subject == subject]
        return rows[:limit]

    async def save_policy_version(
        self, version: str, source: str, body: dict[str, Any], at: datetime, applied: bool = True
    ) -> bool:
        if applied:
            stamps = [p["applied_at"] for p in self.policies.values() if p["applied_at"] is not None]
            if stamps and max(stamps) >= at:
                at = max(stamps) + timedelta(microseconds=1)
        if version in self.policies:
            if applied:
                self.policies[version]["applied_at"] = at
                self.policies[version]["source"] = source
            return False
        self.policies[version] = {
            "version": version, "source": source, "body": body, "created_at": at,
            "applied_at": at if applied else None,
        }  # fmt: skip
        return True

    async def policy_version(self, version: str) -> dict[str, Any] | None:
        row = self.policies.get(version)
        return dict(row) if row else None

    async def latest_policy_version(self) -> dict[str, Any] | None:
        applied = [p for p in self.policies.values() if p["applied_at"] is not None]
        return dict(max(applied, key=lambda p: p["applied_at"])) if applied else None

    async def save_model(self, rec: ModelRecord) -> int:
        if rec.in_use:
            self.models = [dataclasses.replace(m, in_use=False) if m.name == rec.name else m for m in self.models]
        new_id = len(self.models) + 1
        self.models.append(dataclasses.replace(rec, id=new_id))
        return new_id

    async def latest_model(self, name: str, in_use_only: bool = True) -> ModelRecord | None:
        rows = [m for m in self.models if m.name == name and (m.in_use or not in_use_only)]
        return max(rows, key=lambda m: (m.created_at, m.id or 0)) if rows else None

    async def audit(self, rec: AuditRecord) -> int:
        new_id = len(self.audits) + 1
        self.audits.append(dataclasses.replace(rec, id=new_id))
        return new_id

    async def recent_audit(
        self, limit: int = 50, actor: str | None = None, action: str | None = None
    ) -> list[AuditRecord]:
        rows = [a for a in reversed(self.audits) if actor in (None, a.actor) and action in (None, a.action)]
        return rows[:limit]

    async def prune(
        self,
        *,
        decisions_before: datetime | None = None,
        actions_before: datetime | None = None,
        audit_before: datetime | None = None,
        models_kept: int | None = None,
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        if decisions_before is not None:
            keep = [d for d in self.decisions if d.at >= decisions_before]
            counts["decisions"], self.decisions = len(self.decisions) - len(keep), keep
        if actions_before is not None:
            doomed = [
                k for k, a in self.actions.items() if a.updated_at < actions_before and a.state != ActionState.intent
            ]
            for k in doomed:
                del self.actions[k]
            counts["actions"] = len(doomed)
        if audit_before is not None:
            keep_audit = [a for a in self.audits if a.at >= audit_before]
            counts["audit"], self.audits = len(self.audits) - len(keep_audit), keep_audit
        if models_kept is not None:
            ranked = sorted(self.models, key=lambda m: (m.created_at, m.id or 0), reverse=True)
            seen: dict[str, int] = {}
            keep_models = []
            for m in ranked:
                seen[m.name] = seen.get(m.name, 0) + 1
                if m.in_use or seen[m.name] <= models_kept:
                    keep_models.append(m)
            counts["models"] = len(self.models) - len(keep_models)
            self.models = sorted(keep_models, key=lambda m: m.id or 0)
        return counts
