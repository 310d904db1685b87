"""Generation jobs over HTTP, the same operations as `empire jobs` on the same queue.

    POST /v1/jobs                  submit (Idempotency-Key header; the same key again: the same job)
    GET  /v1/jobs?state=&persona=&provider=&key=&limit=    newest first
    GET  /v1/jobs/{id}             one job in full
    POST /v1/jobs/{id}/cancel      stop a job that is not finished
    POST /v1/jobs/{id}/retry       a dead, failed, cancelled or deferred job back in the queue
    POST /v1/jobs/{id}/resolve     decide an unknown_outcome job: {"as": "done"|"failed"|"resubmit"}

Submitting answers 201 with the new job, or 200 with the job the key already names (whatever
its state now), or 409 when the key names a job with a different request (`pools.submit`).
Cancel, retry and resolve answer 409 when the job's state does not allow it, naming the state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from empire.agent.api.auth import Scope
from empire.agent.api.spec import ApiError, Call, Endpoint, Error, Reply, Strict
from empire.agent.pools.jobs import Job, JobState
from empire.agent.pools.queue import JobQueue
from empire.agent.pools.submit import KEY_PREFIX, IdempotencyConflict, JobSpec, new_job, submit
from empire.agent.ports import Clock
from empire.policies.schema import Policy

__all__ = ["JobOut", "endpoints"]

Name = Field(min_length=1, max_length=128)
States = Literal["queued", "leased", "submitting", "submitted", "succeeded", "failed", "dead", "cancelled", "deferred",
                 "unknown_outcome"]  # fmt: skip


class JobResolve(Strict):
    as_: Literal["done", "failed", "resubmit"] = Field(
        alias="as", description="done: it was generated (succeeded); failed: it was not and should not be (dead); "
        "resubmit: it was not, send it again under the same key"
    )  # fmt: skip
    note: str = Field(default="", max_length=2000, description="why (kept in the job and the audit log)")


class JobSubmit(Strict):
    prompt: str = Field(min_length=1, max_length=4000)
    persona: str | None = Field(default=None, min_length=1, max_length=128,
                                description="a persona in the policy: its providers, genre and priority by default")  # fmt: skip
    providers: list[str] | None = Field(default=None, min_length=1, max_length=10,
                                        description="preference order; default: the persona's")  # fmt: skip
    genre: str | None = Field(default=None, max_length=128)
    title: str | None = Field(default=None, max_length=512)
    priority: Literal["high", "normal", "low"] | None = None
    not_before: AwareDatetime | None = Field(default=None, description="not submitted to a provider before")


class JobOut(BaseModel):
    id: int
    key: str
    persona: str | None
    provider: str
    account: str | None
    priority: str
    state: str
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
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls.model_validate(job.describe())


class JobList(BaseModel):
    jobs: list[JobOut]


class JobQuery(Strict):
    state: States | None = None
    persona: str | None = Field(default=None, max_length=128)
    provider: str | None = Field(default=None, max_length=128)
    key: str | None = Field(default=None, max_length=200, description="an idempotency key (as submitted)")
    limit: int = Field(default=50, ge=1, le=1000)


_KEY_HEADER = "Idempotency-Key"
_AGAIN = (JobState.dead, JobState.cancelled, JobState.failed, JobState.deferred)


def endpoints(queue: JobQueue, policy: Callable[[], Policy], clock: Clock) -> list[Endpoint]:
    async def create(call: Call) -> Reply:
        key = call.request.headers.get(_KEY_HEADER, "").strip()
        if not key:
            raise ApiError(422, f"the {_KEY_HEADER} header is required (any unique text: a retry with the same "
                                "key returns the same job instead of a second one)",
                           [{"path": f"header.{_KEY_HEADER}", "message": "required"}])  # fmt: skip
        b: JobSubmit = call.body
        spec = JobSpec(b.prompt, b.persona, tuple(b.providers or ()), b.genre, b.title, b.priority, b.not_before)
        job = new_job(spec, key, policy(), call.actor)  # ConfigError: 422
        try:
            stored, created = await submit(queue, job, clock.now())
        except IdempotencyConflict as exc:
            call.audit(f"job/{exc.job.id}", key=key)
            raise ApiError(409, str(exc)) from None
        call.audit(f"job/{stored.id}", key=key, created=created)
        return Reply(201 if created else 200, JobOut.of(stored), {"Location": f"/v1/jobs/{stored.id}"})

    async def list_(call: Call) -> Reply:
        q: JobQuery = call.query
        if q.key is not None:
            job = await queue.get(KEY_PREFIX + q.key) or await queue.get(q.key)
            return Reply(200, JobList(jobs=[JobOut.of(job)] if job is not None else []))
        jobs = await queue.list(q.state, q.persona, q.limit, q.provider)
        return Reply(200, JobList(jobs=[JobOut.of(j) for j in jobs]))

    async def found(job_id: int) -> Job:
        job = await queue.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id}")
        return job

    async def show(call: Call) -> Reply:
        return Reply(200, JobOut.of(await found(call.params["id"])))

    def change(verb: str) -> Callable[[Call], Any]:
        async def handler(call: Call) -> Reply:
            job_id = call.params["id"]
            call.audit(f"job/{job_id}")
            before = await found(job_id)
            now = clock.now()
            done = await (queue.retry(job_id, now) if verb == "retry" else queue.cancel(job_id, now))
            if not done:
                raise ApiError(409, f"job {job_id} is {before.state.value}, cannot {verb}")
            call.audit(was=before.state.value)
            return Reply(200, JobOut.of(await found(job_id)))

        return handler

    async def resolve(call: Call) -> Reply:
        job_id, b = call.params["id"], call.body
        call.audit(f"job/{job_id}", outcome=b.as_, note=b.note)
        before = await found(job_id)
        if not await queue.resolve(job_id, b.as_, b.note or f"by {call.actor}", clock.now()):
            raise ApiError(409, f"job {job_id} is {before.state.value}, not unknown_outcome: nothing to resolve")
        call.audit(was=before.state.value)
        return Reply(200, JobOut.of(await found(job_id)))

    job = {"id": "the job's id"}
    return [
        Endpoint("POST", "/v1/jobs", "jobs.submit", "Submit a generation job", create,
                 {201: ("queued", JobOut), 200: ("the key names this job already: nothing new was queued", JobOut),
                  409: ("the key names a job with a different request", Error)},
                 scope=Scope.write, tag="jobs", body=JobSubmit,
                 headers={_KEY_HEADER: (True, "unique per job; a retry with the same key returns the same job")}),
        Endpoint("GET", "/v1/jobs", "jobs.list", "Jobs, newest first", list_, {200: ("OK", JobList)},
                 tag="jobs", query=JobQuery),
        Endpoint("GET", "/v1/jobs/{id:int}", "jobs.show", "One job in full", show,
                 {200: ("OK", JobOut), 404: ("no such job", Error)}, tag="jobs", params=job),
        Endpoint("POST", "/v1/jobs/{id:int}/cancel", "jobs.cancel",
                 "Cancel a job that is not finished (one already submitted keeps its cost in the budget)",
                 change("cancel"), {200: ("cancelled", JobOut), 404: ("no such job", Error),
                                    409: ("the job is finished", Error)}, scope=Scope.write, tag="jobs", params=job),
        Endpoint("POST", "/v1/jobs/{id:int}/retry", "jobs.retry",
                 "Put a dead, failed, cancelled or deferred job back in the queue, attempts reset",
                 change("retry"), {200: ("queued again", JobOut), 404: ("no such job", Error),
                                   409: ("the job's state does not allow it", Error)},
                 scope=Scope.write, tag="jobs", params=job),
        Endpoint("POST", "/v1/jobs/{id:int}/resolve", "jobs.resolve",
                 "Decide a job whose outcome is unknown (a crash while submitting to a provider that ignores "
                 "idempotency keys): done, failed or resubmit", resolve,
                 {200: ("resolved", JobOut), 404: ("no such job", Error),
                  409: ("the job is not unknown_outcome", Error)},
                 scope=Scope.write, tag="jobs", params=job, body=JobResolve),
    ]  # fmt: skip
