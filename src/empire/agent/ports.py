"""Ports: the small Protocols between the agent's core and the outside world.

Each port has an in-memory twin and one contract test suite parametrized over every
implementation (`tests/contract/`). Adapters (Prometheus, Kubernetes, SQL, Redis, HTTP providers,
storage backends, alert receivers) implement these; the loop and the pure core see only them.
Add a port's Protocol here, next to the others, when a new kind of adapter appears.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from empire.state.records import ActionRecord, ActionState, AuditRecord, DecisionRecord, ModelRecord

__all__ = ["Clock", "StateStore"]


@runtime_checkable
class Clock(Protocol):
    """Time as a dependency: the core takes `now` as an argument; the loop asks a Clock."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class StateStore(Protocol):
    """Decisions, the action journal, policy versions, the model registry and the audit trail."""

    async def record_decision(self, rec: DecisionRecord) -> int: ...

    async def recent_decisions(self, target: str | None = None, limit: int = 20) -> list[DecisionRecord]: ...

    async def write_intent(self, rec: ActionRecord) -> ActionRecord: ...

    async def action_by_key(self, key: str) -> ActionRecord | None: ...

    async def finish_action(
        self, action_id: int, state: ActionState, at: datetime, error: str | None = None
    ) -> None: ...

    async def unfinished_actions(self) -> list[ActionRecord]: ...

    async def recent_actions(self, subject: str | None = None, limit: int = 20) -> list[ActionRecord]: ...

    async def save_policy_version(
        self, version: str, source: str, body: dict[str, Any], at: datetime, applied: bool = True
    ) -> bool: ...

    async def policy_version(self, version: str) -> dict[str, Any] | None: ...

    async def latest_policy_version(self) -> dict[str, Any] | None: ...

    async def save_model(self, rec: ModelRecord) -> int: ...

    async def latest_model(self, name: str, in_use_only: bool = True) -> ModelRecord | None: ...

    async def audit(self, rec: AuditRecord) -> int: ...

    async def recent_audit(self, limit: int = 50) -> list[AuditRecord]: ...
