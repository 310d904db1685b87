"""Ports: the small Protocols between the agent's core and the outside world.

Each port has an in-memory twin and one contract test suite parametrized over every
implementation (`tests/contract/`). Adapters (Prometheus, Kubernetes, SQL, Redis, HTTP providers,
storage backends, alert receivers) implement these; the loop and the pure core see only them.
Add a port's Protocol here, next to the others, when a new kind of adapter appears.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from empire.state.records import ActionRecord, ActionState, AuditRecord, DecisionRecord, ModelRecord

if TYPE_CHECKING:
    from empire.agent.types import Action, Outcome, ReadBack, Sample, WorkloadState
    from empire.policies.scaling import Target

__all__ = ["Clock", "Executor", "LeaderElection", "Observer", "StateStore", "WorkloadReader"]


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


@runtime_checkable
class Observer(Protocol):
    """A metric source (Prometheus, a replayed trace).

    `observe` returns one `Sample` per signal of the target; a problem with one signal (no series,
    several series, NaN, a bad query) is reported in that sample's status. When the source itself
    is unreachable it raises `TemporaryError`/`PermanentError`, and the loop's fallback rule applies.
    `history` returns (timestamp, value) points for model fitting (`query_range`)."""

    async def observe(self, target: Target, now: datetime) -> tuple[Sample, ...]: ...

    async def history(
        self, query: str, start: datetime, end: datetime, step: float
    ) -> list[tuple[datetime, float]]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Executor(Protocol):
    """Carries out one kind of action, registered with the `ActionRunner` by action type.

    `execute` returns an `Outcome` (applied, or unchanged when the world already matched) and raises
    `TemporaryError`/`PermanentError` on failure; the runner journals either. `read_back` answers,
    for an intent found unfinished at start, whether it took effect; it never re-applies it."""

    async def execute(self, action: Action) -> Outcome: ...

    async def read_back(self, record: ActionRecord) -> ReadBack: ...


@runtime_checkable
class WorkloadReader(Protocol):
    """Reads a target's workload (replicas, ready replicas, annotations) before deciding."""

    async def workload(self, target: Target) -> WorkloadState: ...


@runtime_checkable
class LeaderElection(Protocol):
    """Exactly one replica acts. `ensure()` acquires or renews and answers "am I the leader now?";
    the loop calls it at every tick and stops acting as soon as it answers False."""

    name: str

    @property
    def is_leader(self) -> bool: ...

    async def ensure(self) -> bool: ...

    async def release(self) -> None: ...
