"""A job asked for by a person or another service (`empire jobs submit`, `POST /v1/jobs`), not by
the planner's cadence.

The caller names the job with an idempotency key; the queue stores it as `api/<key>` (the
planner's keys are `gen/...`, so the two cannot collide). Submitting the same key again with the
same request answers with the job already queued, in whatever state it is now, and queues
nothing: a client that lost the reply can retry safely. The same key with a different request
is a conflict (`IdempotencyConflict`), never a silent overwrite.

The request is checked against the policy in force: the providers must be configured, a persona
must exist (its providers, genres and priority are the defaults), and without a persona a
provider must be named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from empire.agent.pools.jobs import Job, JobPriority, NewJob
from empire.agent.pools.queue import JobQueue
from empire.errors import ConfigError
from empire.policies.schema import Policy

__all__ = ["KEY_PREFIX", "IdempotencyConflict", "JobSpec", "new_job", "submit"]

KEY_PREFIX = "api/"
_COMPARED = ("prompt", "persona", "genre", "title", "providers")


class IdempotencyConflict(ConfigError):
    """The key names a job with a different request."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


@dataclass(frozen=True)
class JobSpec:
    prompt: str
    persona: str | None = None
    providers: tuple[str, ...] = ()  # preference order; default: the persona's
    genre: str | None = None
    title: str | None = None
    priority: str | None = None  # high | normal | low; default: the persona's, else normal
    not_before: datetime | None = None


def new_job(spec: JobSpec, key: str, policy: Policy, actor: str) -> NewJob:
    """The queue row for `spec`, or a ConfigError naming what the policy does not have."""
    if not key or len(key) > 190 or not key.isprintable():
        raise ConfigError("idempotency key: 1 to 190 printable characters")
    if not spec.prompt.strip():
        raise ConfigError("prompt: must not be empty")
    persona = None
    if spec.persona is not None:
        persona = next((p for p in policy.personas if p.name == spec.persona), None)
        if persona is None:
            known = ", ".join(p.name for p in policy.personas) or "none"
            raise ConfigError(f"persona: {spec.persona!r} is not in the policy (personas: {known})")
    providers = spec.providers or (persona.providers if persona is not None else ())
    if not providers:
        raise ConfigError("providers: name at least one provider, or a persona whose providers to use")
    known_providers = {p.name for p in policy.providers}
    unknown = [p for p in providers if p not in known_providers]
    if unknown:
        raise ConfigError(f"providers: {', '.join(map(repr, unknown))} not in the policy "
                          f"(providers: {', '.join(sorted(known_providers)) or 'none'})")  # fmt: skip
    priority = spec.priority or (persona.priority.value if persona is not None else "normal")
    genre = spec.genre if spec.genre is not None else (persona.genres[0] if persona is not None else "")
    request: dict[str, Any] = {"prompt": spec.prompt, "persona": spec.persona, "genre": genre, "title": spec.title,
                               "providers": list(providers), "submitted_by": actor}  # fmt: skip
    return NewJob(KEY_PREFIX + key, providers[0], request, spec.persona, JobPriority[priority], spec.not_before)


async def submit(queue: JobQueue, job: NewJob, now: datetime) -> tuple[Job, bool]:
    """(the job, True when it was queued now) or IdempotencyConflict."""
    added = await queue.enqueue([job], now)
    stored = await queue.get(job.idempotency_key)
    assert stored is not None, "a job enqueued or found by its key is readable"
    if not added and any(stored.request.get(k) != job.request.get(k) for k in _COMPARED):
        raise IdempotencyConflict(
            f"idempotency key {job.idempotency_key.removeprefix(KEY_PREFIX)!r} was used for job {stored.id} "
            "with a different request; use a new key for a new job", stored)  # fmt: skip
    return stored, bool(added)
