"""The provider port: how a pool talks to one generation API, whatever its wire format.

A provider is asynchronous job-based, like every music/voice generation API: `submit` creates a
job (carrying our idempotency key, so a resubmission after a crash returns the job the provider
already has instead of generating and billing twice), `poll` reports its status, `fetch` reads
the result's bytes. Failures are raised as the classified errors of `empire.agent.pools.errors`;
adapters never retry (the dispatcher decides).

Credentials are resolved once, held as `SecretStr` (masked in every repr) and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["JobProvider", "JobRequest", "PollResult", "Submission"]


@dataclass(frozen=True)
class JobRequest:
    key: str  # the idempotency key sent to the provider
    prompt: str
    persona: str = ""
    genre: str = ""
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        """Values a body template may use."""
        return {"prompt": self.prompt, "persona": self.persona, "genre": self.genre, "title": self.title,
                "idempotency_key": self.key}  # fmt: skip


@dataclass(frozen=True)
class PollResult:
    status: Literal["running", "done", "failed"]
    meta: dict[str, Any] = field(default_factory=dict)  # title, score, ... as the provider reports them
    result_url: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Submission:
    provider_job_id: str
    done: PollResult | None = None  # some APIs answer a finished job at once (or on a replayed key)


class JobProvider(Protocol):
    name: str

    def poll_interval(self) -> float:
        """Seconds between polls of one running job."""
        ...

    def job_timeout(self) -> float:
        """Seconds after which a running job is given up (and resubmitted under a fresh key)."""
        ...

    async def submit(self, account: str, request: JobRequest) -> Submission: ...

    async def poll(self, account: str, provider_job_id: str) -> PollResult: ...

    async def fetch(self, account: str, result: PollResult) -> bytes: ...

    def ignores_idempotency(self) -> bool:
        """True when a resubmitted idempotency key creates another job (the policy says so)."""
        ...

    def can_look_up(self) -> bool:
        """True when a job can be found by our reference (`lookup`)."""
        ...

    async def lookup(self, account: str, key: str) -> str | None:
        """The provider's job id for our reference `key`, or None when it never arrived."""
        ...

    async def aclose(self) -> None: ...
