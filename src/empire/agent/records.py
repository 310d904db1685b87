"""Plain records the state store reads and writes: what the loop, the CLI and the operator share.

Frozen dataclasses, not ORM objects: they cross threads and processes, go into JSON for `/status`
and the CR status, and must never lazily touch the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["ActionRecord", "ActionState", "AuditRecord", "DecisionRecord", "ModelRecord", "jsonable"]


class ActionState(StrEnum):
    intent = "intent"  # written before execution
    applied = "applied"
    failed = "failed"
    skipped = "skipped"  # dry run, paused, or nothing to change
    reconciled = "reconciled"  # found unfinished at start; read back and settled


@dataclass(frozen=True)
class DecisionRecord:
    target: str
    at: datetime
    current: int | None
    recommended: int | None
    desired: int | None
    reasons: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)
    policy_version: str | None = None
    replica: str | None = None
    dry_run: bool = False
    id: int | None = None


@dataclass(frozen=True)
class ActionRecord:
    idempotency_key: str
    kind: str
    subject: str
    params: dict[str, Any]
    reason: str
    state: ActionState
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    decision_id: int | None = None
    replica: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class ModelRecord:
    name: str
    kind: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    created_at: datetime
    blob: bytes | None = None
    in_use: bool = False
    id: int | None = None


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


def jsonable(value: Any) -> Any:
    """Details go to JSON columns (PostgreSQL JSONB rejects NaN/inf): make them plain and finite."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
