"""Jobs as values: what the queue stores, the CLI prints and the dispatcher works on.

A job's state machine (every transition is one guarded UPDATE in the jobs table, which makes the
table itself the per-job journal)::

    queued ──claim──► leased ──provider accepted──► submitted ──done──► succeeded
      ▲  ▲              │  lease expired (crash): another replica re-claims it, resubmits under the
      │  │              │  SAME idempotency key (the provider answers with the job it already has),
      │  │              │  or, once submitted, resumes polling the provider's job id
      │  └── failed ◄───┴── temporary error (backoff: not_before) ──► dead (attempts used up, or
      │                                                                     a permanent error)
      └── retry (CLI)                          cancel (CLI) ──► cancelled
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

__all__ = ["ACTIVE_STATES", "CLAIMABLE_STATES", "FINAL_STATES", "Job", "JobPriority", "JobState", "NewJob", "Spend"]


class JobState(StrEnum):
    queued = "queued"
    leased = "leased"
    submitted = "submitted"
    succeeded = "succeeded"
    failed = "failed"  # a temporary failure; queued again after not_before
    dead = "dead"  # the dead-letter state: attempts used up or a permanent error
    cancelled = "cancelled"
    deferred = "deferred"  # held back by the budget guard; not claimed until released
    # a provider that ignores idempotency keys is being sent this job: if the process dies now,
    # the submission may have reached it (the next owner looks it up, or marks it unknown_outcome)
    submitting = "submitting"
    unknown_outcome = "unknown_outcome"  # maybe generated, maybe not: a person decides (`empire jobs resolve`)


CLAIMABLE_STATES = (JobState.queued, JobState.failed)
ACTIVE_STATES = (JobState.leased, JobState.submitting, JobState.submitted)
FINAL_STATES = (JobState.succeeded, JobState.dead, JobState.cancelled)


class JobPriority(IntEnum):
    high = 0
    normal = 1
    low = 2


@dataclass(frozen=True)
class NewJob:
    idempotency_key: str
    provider: str
    request: dict[str, Any]  # prompt, persona, genre, title, providers (preference order)
    persona: str | None = None
    priority: JobPriority = JobPriority.normal
    not_before: datetime | None = None


@dataclass(frozen=True)
class Job:
    id: int
    idempotency_key: str
    persona: str | None
    provider: str
    account: str | None
    priority: int
    state: JobState
    attempts: int
    not_before: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    provider_job_id: str | None
    request: dict[str, Any]
    result: dict[str, Any] | None
    last_error: str | None
    error_class: str | None
    cost: float | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    @property
    def providers(self) -> tuple[str, ...]:
        """Preference order: the request's list, else the job's provider."""
        listed = tuple(self.request.get("providers") or ())
        return listed or (self.provider,)

    @property
    def submit_key(self) -> str:
        """The idempotency key sent to the provider. It changes only after the provider accepted
        this job and then reported it failed (a fresh generation is wanted, not the failed one)."""
        gen = int(self.request.get("key_generation", 0))
        return self.idempotency_key if gen == 0 else f"{self.idempotency_key}~{gen}"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "key": self.idempotency_key, "persona": self.persona, "provider": self.provider,
            "account": self.account, "priority": JobPriority(self.priority).name, "state": self.state.value,
            "attempts": self.attempts, "not_before": self.not_before.isoformat(),
            "lease_owner": self.lease_owner,
            "lease_expires_at": self.lease_expires_at.isoformat() if self.lease_expires_at else None,
            "provider_job_id": self.provider_job_id, "request": self.request, "result": self.result,
            "last_error": self.last_error, "error_class": self.error_class, "cost": self.cost,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }  # fmt: skip


@dataclass(frozen=True)
class Spend:
    """Money spent (succeeded jobs) plus money reserved (jobs in flight), per UTC day and month."""

    day: float = 0.0
    month: float = 0.0
    by_provider_day: dict[str, float] = field(default_factory=dict)
    by_provider_month: dict[str, float] = field(default_factory=dict)

    def provider_day(self, name: str) -> float:
        return self.by_provider_day.get(name, 0.0)

    def provider_month(self, name: str) -> float:
        return self.by_provider_month.get(name, 0.0)
