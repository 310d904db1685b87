"""The durable job queue (the pools' `JobQueue` port): jobs live in the state DB until they are final.

Why the database and not Redis or memory: a job is money (every submission is billed) and a
promise (a persona's release), so it must survive a crash, a restart and a second replica. The
table is also the job's journal: every transition is one guarded UPDATE, and the guard
(`lease_owner = me AND state IN (leased, submitted)`) makes a late write from a replica that lost
its lease a no-op instead of a double completion.

Claiming is `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas skip each other's rows
instead of queueing on them) and a `BEGIN IMMEDIATE` transaction on SQLite (the database's single
writer lock; `Database` begins every SQLite transaction that way). When a budget is configured,
the claim also checks and reserves spend inside the same transaction, under a PostgreSQL advisory
lock, so replicas claiming at the same time cannot overshoot it together.

Writes after the claim are batched (`apply`): one transaction carries many jobs' transitions,
which is what lets one dispatcher keep hundreds of generations moving on SQLite.

The port is `JobQueue` below; `empire.state.jobs.SqlJobQueue` is the implementation on the state DB
(SQLite, PostgreSQL) and `empire.agent.pools.memory.MemoryJobQueue` the in-process twin, so the
dispatcher and the planner run in a unit test on a fake clock. `tests/contract/test_job_queue.py`
runs one suite over all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from empire.agent.pools.budget import BudgetLedger, BudgetLimits
from empire.agent.pools.jobs import Job, NewJob, Spend

__all__ = [
    "RESOLUTIONS", "DeadLettered", "JobQueue", "Noted", "OutcomeUnknown", "Released", "Rescheduled", "Submitted",
    "Submitting", "Succeeded", "Update",
    "within_budget",
]  # fmt: skip


RESOLUTIONS = ("done", "failed", "resubmit")  # what a person may decide about an unknown_outcome job


# -- transitions after the claim, applied in batches ------------------------------------------
@dataclass(frozen=True)
class Submitted:
    job_id: int
    owner: str
    provider: str
    account: str
    provider_job_id: str
    cost: float
    at: datetime


@dataclass(frozen=True)
class Submitting:
    """The intent, written before a job goes to a provider that ignores idempotency keys."""

    job_id: int
    owner: str
    provider: str
    account: str
    at: datetime


@dataclass(frozen=True)
class OutcomeUnknown:
    """The job may or may not have been generated and the provider cannot be asked: a person decides."""

    job_id: int
    owner: str
    error: str
    at: datetime


@dataclass(frozen=True)
class Succeeded:
    job_id: int
    owner: str
    result: dict[str, Any]
    cost: float
    at: datetime


@dataclass(frozen=True)
class Rescheduled:
    job_id: int
    owner: str
    attempts: int
    not_before: datetime
    error: str
    error_class: str
    at: datetime
    request: dict[str, Any] | None = None  # a new request body (fresh key generation), else unchanged


@dataclass(frozen=True)
class DeadLettered:
    job_id: int
    owner: str
    attempts: int
    error: str
    error_class: str
    at: datetime


@dataclass(frozen=True)
class Noted:
    """Why a job still waits, kept as its last error without changing its state (an account
    rejected it and it was re-routed), so `empire jobs list/show` can say so."""

    job_id: int
    owner: str
    error: str
    error_class: str
    at: datetime


@dataclass(frozen=True)
class Released:
    """Give a leased job back without spending an attempt (shutdown, no route)."""

    job_id: int
    owner: str
    at: datetime


Update = Submitting | Submitted | Succeeded | Rescheduled | DeadLettered | Noted | OutcomeUnknown | Released


def within_budget(limits: BudgetLimits, spend: Spend | None, candidates: Sequence[Job], room: int) -> list[Job]:
    """The claim's budget guard: up to `room` candidates, in order, each with its estimated cost, skipping
    those whose cost does not fit what is left of the budget after `spend` (None: no budget is active)."""
    if not limits.active or spend is None:
        return [replace(j, cost=limits.estimate(j.provider)) for j in candidates[:room]]
    ledger = BudgetLedger(limits, spend)
    taken: list[Job] = []
    for j in candidates:
        cost = limits.estimate(j.provider)
        if ledger.reserve(j.provider, cost):
            taken.append(replace(j, cost=cost))
            if len(taken) >= room:
                break
    return taken


class JobQueue(Protocol):
    """Where jobs live until they are final. Transitions after a claim are guarded by the lease: a write
    from an owner that lost its lease (or of a job no longer leased/submitted) changes nothing."""

    limits: BudgetLimits  # the budget guard (the dispatcher swaps it on a policy reload)
    held_personas: frozenset[str]  # paused personas: their queued jobs wait

    async def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> int:
        """Insert jobs; a key that exists already is left alone. Returns how many were new."""
        ...

    async def claim(self, owner: str, now: datetime, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` jobs: expired leases first (a crashed replica's work), then queued
        jobs by priority and age. Budget permitting: a job that does not fit stays queued."""
        ...

    async def reserve_for(self, job_id: int, owner: str, provider: str, now: datetime) -> bool:
        """Move a leased job's reservation to a fallback provider, if that provider's budget allows."""
        ...

    async def heartbeat(self, owner: str, now: datetime, lease_seconds: float) -> int:
        """Extend every lease this owner holds; how many."""
        ...

    async def apply(self, updates: Sequence[Update]) -> None:
        """Apply transitions in order, all or none."""
        ...

    async def cancel(self, job_id: int, now: datetime) -> bool:
        """Cancel a job that is not final (a submitted one keeps its cost in the budget)."""
        ...

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Put a dead, cancelled, failed or deferred job back in the queue with fresh attempts."""
        ...

    async def resolve(self, job_id: int, outcome: str, note: str, now: datetime) -> bool:
        """A person's decision on an `unknown_outcome` job (`RESOLUTIONS`): `done` (it was generated:
        succeeded, `note` in its result), `failed` (dead), `resubmit` (queued again, same key)."""
        ...

    async def get(self, ref: int | str) -> Job | None:
        """By id or idempotency key."""
        ...

    async def list(
        self, state: str | None = None, persona: str | None = None, limit: int = 50, provider: str | None = None
    ) -> list[Job]:
        """Newest first."""
        ...

    async def counts(self) -> dict[tuple[str, int], int]:
        """Jobs per (state, priority)."""
        ...

    async def open_jobs(self) -> int:
        """Jobs not final yet (queued, failed, leased, submitted), held personas' queued ones left out."""
        ...

    async def in_flight(self) -> dict[tuple[str, str | None], int]:
        """Jobs leased or submitted per (provider, account)."""
        ...

    async def done_since(self, since: datetime) -> dict[tuple[str, str | None], tuple[int, float]]:
        """Succeeded jobs and their cost per (provider, account) since `since`."""
        ...

    async def count_keys(self, keys: Sequence[str]) -> int:
        """How many of these idempotency keys are in the queue (any state)."""
        ...

    async def count_prefix(self, prefix: str) -> int:
        """Jobs whose key starts with `prefix` (what the planner already created in a window)."""
        ...

    async def planned_since(self, since: datetime) -> dict[str, int]:
        """Generation jobs (`gen/` keys) per persona created at or after `since` that were not given
        up (cancelled, failed, dead): the tracks a persona has had or will have (the spending floor)."""
        ...

    async def queued_cost(self) -> dict[str, float]:
        """Estimated cost of the jobs waiting per provider (for the planner's projection)."""
        ...

    async def spend(self, now: datetime) -> Spend:
        """Succeeded and cancelled-after-submission cost by UTC day and month, plus reservations in flight."""
        ...
