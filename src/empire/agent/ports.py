"""Ports: the small Protocols between the agent's core and the outside world.

Each port has an in-memory twin and one contract test suite parametrized over every
implementation (`tests/contract/`). Adapters (Prometheus, Kubernetes, SQL, Redis, HTTP providers,
storage backends, alert receivers) implement these; the loop and the pure core see only them.
Add a port's Protocol here, next to the others, when a new kind of adapter appears.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, runtime_checkable

from empire.agent.records import ActionRecord, ActionState, AuditRecord, DecisionRecord, ModelRecord

if TYPE_CHECKING:
    from empire.agent.types import Action, Outcome, ReadBack, Sample, WorkloadState
    from empire.policies.scaling import Target

__all__ = [
    "Clock",
    "Executor",
    "LeaderElection",
    "Observer",
    "RateLimiter",
    "StateStore",
    "StorageBackend",
    "Window",
    "WorkloadReader",
]


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

    async def recent_audit(
        self, limit: int = 50, actor: str | None = None, action: str | None = None
    ) -> list[AuditRecord]: ...

    async def prune(
        self,
        *,
        decisions_before: datetime | None = None,
        actions_before: datetime | None = None,
        audit_before: datetime | None = None,
        models_kept: int | None = None,
    ) -> dict[str, int]: ...


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
    the loop calls it at every tick and stops acting as soon as it answers False. `reason` says
    why leadership last changed (journaled when it is lost)."""

    name: str
    reason: str

    @property
    def is_leader(self) -> bool: ...

    async def ensure(self) -> bool: ...

    async def release(self) -> None: ...


@runtime_checkable
class StorageBackend(Protocol):
    """Where content bytes live: one namespace per storage tier (a directory, or an S3 key prefix
    with its storage class). A location is a key relative to its tier (`location_for(object_id)`).

    Writes (`put`, `copy`) are atomic and durable when they return: a reader never finds a partial
    object under its final name, and a crash after the return cannot lose it. `delete` is
    idempotent and also removes what an interrupted write left behind. `progress(n)` is awaited
    after each chunk of n bytes a copy moves (the mover's bytes/s budget and fault hooks).
    Errors: `NotFoundError` for a missing object, `TemporaryError` for an unreachable store or a
    full disk, `PermanentError` for the rest. Checksums are "sha256:<hex>"."""

    tier_names: tuple[str, ...]

    def location_for(self, object_id: str) -> str: ...

    async def put(self, tier: str, location: str, chunks: AsyncIterable[bytes]) -> tuple[int, str]: ...

    def read(self, tier: str, location: str) -> AsyncIterator[bytes]: ...

    async def copy(
        self,
        src_tier: str,
        src_location: str,
        dst_tier: str,
        dst_location: str,
        progress: Callable[[int], Awaitable[None]] | None = None,
    ) -> int: ...

    async def checksum(self, tier: str, location: str) -> str: ...

    async def exists(self, tier: str, location: str) -> bool: ...

    async def delete(self, tier: str, location: str) -> bool: ...

    async def list(self, tier: str) -> list[str]: ...

    async def aclose(self) -> None: ...


class Window(NamedTuple):
    """A limit of `limit` requests per `seconds`, as providers publish "N requests per minute":
    `fixed` windows start at multiples of `seconds` on the wall clock (the provider resets its
    counter there), `sliding` counts any `seconds` interval. `margin` seconds pad each window
    (requests arrive a little after they are sent): a sliding window is `seconds + margin` long, a
    fixed one opens `margin` after its boundary."""

    kind: Literal["fixed", "sliding"]
    limit: int
    seconds: float
    margin: float = 0.0


@runtime_checkable
class RateLimiter(Protocol):
    """Per-account request rate (token bucket or `Window`) and concurrency (slots), for the pools.

    `try_acquire` takes one token and returns 0.0, or takes nothing and returns the seconds until
    one is expected: from a token bucket (`rate` per second, `burst`), or, given a `window`, from
    that window's count (then `rate` and `burst` are not used). Slots are held by a named holder and expire after `ttl` seconds unless
    renewed, so a crashed replica's slots come back by themselves. Implementations: in-process
    (`pools.bucket.LocalLimiter`) and shared across replicas (`state.redis.RedisLimiter`)."""

    async def try_acquire(self, key: str, rate: float, burst: float, window: Window | None = None) -> float: ...

    async def acquire_slot(self, key: str, holder: str, limit: int, ttl: float) -> bool: ...

    async def release_slot(self, key: str, holder: str) -> None: ...

    async def renew_slots(self, key: str, holders: list[str], ttl: float) -> None: ...

    async def slots_in_use(self, key: str) -> int: ...

    async def aclose(self) -> None: ...
