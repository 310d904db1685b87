"""A seeded, deterministic stand-in for a generation API: the embedded default and the tests.

Every outcome is drawn from a `random.Random` seeded by (seed, account, key, n-th submission of
that key), so a run is reproducible call for call, yet a retried job draws again (a 5xx is not a
curse on a job forever). Faults, as the policy's `simulated` section sets them: 429 with
`Retry-After`, 5xx, timeouts (the provider *accepted* the job and the answer was lost, which is
exactly the case idempotency keys exist for), and dead accounts (always 401). Latency is normal
with the policy's mean and standard deviation, measured on the injected clock, so a fake clock
runs a day of generation in milliseconds. Results are small deterministic WAV files (a sine tone
whose pitch depends on the key) with a title and a compliance score (about 1 in 10 below 0.95).
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import struct
import wave
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from empire.agent.pools.errors import AuthFailed, BadRequest, ProviderTimeout, RateLimited, ServerError
from empire.agent.pools.providers.base import JobRequest, PollResult, Submission
from empire.agent.ports import Clock
from empire.policies.generation import SimulatedProviderSpec

__all__ = ["SimulatedProvider", "simulated_audio"]

_WORDS = (
    "neon", "midnight", "velvet", "echo", "drift", "solar", "ember", "glass", "river", "static", "halo", "orbit",
    "violet", "signal", "paper", "tide", "lumen", "hollow", "copper", "dusk", "aurora", "cascade", "mirage", "pulse",
)  # fmt: skip
MAX_REMEMBERED = 100_000


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def simulated_audio(key: str, seconds: float = 0.25, rate: int = 8000) -> bytes:
    """A short mono 16-bit WAV: a sine tone whose pitch is derived from `key`."""
    freq = 220.0 + _rng("pitch", key).random() * 660.0
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(int(seconds * rate))
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


@dataclass
class _SimJob:
    key: str
    account: str
    request: JobRequest
    done_at: float
    meta: dict[str, Any]


class SimulatedProvider:
    def __init__(self, name: str, spec: SimulatedProviderSpec, clock: Clock, accounts: tuple[str, ...] = ()) -> None:
        self.name = name
        self.spec = spec
        self._clock = clock
        self._accounts = set(accounts)
        self._by_key: OrderedDict[str, _SimJob] = OrderedDict()
        self._submissions: dict[str, int] = {}
        self.accepted = 0  # jobs created (a replayed key does not create one)

    def __repr__(self) -> str:
        return f"SimulatedProvider(name={self.name!r}, seed={self.spec.seed})"

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def poll_interval(self) -> float:
        return min(5.0, max(0.01, self.spec.latency_mean.total_seconds() / 4))

    def job_timeout(self) -> float:
        mean, sd = self.spec.latency_mean.total_seconds(), self.spec.latency_sd.total_seconds()
        return max(60.0, 10 * (mean + 4 * sd))

    def _meta(self, key: str, request: JobRequest) -> dict[str, Any]:
        r = _rng(self.spec.seed, "meta", key)
        title = request.title or " ".join(r.choice(_WORDS).capitalize() for _ in range(2 + r.randrange(2)))
        score = round(1.0 - abs(r.gauss(0.0, 0.03)), 4)
        return {"title": title, "persona": request.persona, "genre": request.genre, "score": score,
                "duration_s": 0.25, "format": "wav"}  # fmt: skip

    async def submit(self, account: str, request: JobRequest) -> Submission:
        if self._accounts and account not in self._accounts:
            raise AuthFailed(f"{self.name}/{account} submit: HTTP 401")
        if account in self.spec.dead_accounts:
            raise AuthFailed(f"{self.name}/{account} submit: HTTP 401")
        if not request.prompt:
            raise BadRequest(f"{self.name}/{account} submit: HTTP 422 (empty prompt)")
        n = self._submissions.get(request.key, 0) + 1
        self._submissions[request.key] = n
        r = _rng(self.spec.seed, account, request.key, n)
        u = r.random()
        s = self.spec
        if u < s.rate_limit_rate:
            raise RateLimited(f"{self.name}/{account} submit: HTTP 429", delay=1.0 + r.randrange(5))
        u -= s.rate_limit_rate
        if u < s.server_error_rate:
            raise ServerError(f"{self.name}/{account} submit: HTTP 503")
        u -= s.server_error_rate
        job = self._by_key.get(request.key)
        if job is None:
            mean, sd = s.latency_mean.total_seconds(), s.latency_sd.total_seconds()
            latency = max(0.05 * mean, r.gauss(mean, sd))
            job = _SimJob(request.key, account, request, self._now() + latency, self._meta(request.key, request))
            self._by_key[request.key] = job
            self.accepted += 1
            while len(self._by_key) > MAX_REMEMBERED:
                self._by_key.popitem(last=False)
        if u < s.timeout_rate:
            raise ProviderTimeout(f"{self.name}/{account} submit: timed out")
        return Submission(job.key)

    async def analytics(
        self, account: str, fields: dict[str, str], spec: Any, days: Sequence[date] = ()
    ) -> list[dict[str, Any]]:
        """Seeded daily figures for a publication (no network): views fall off with the days since
        it went out, engagement and revenue follow the views. `days`: the days asked for."""
        key = fields.get("idempotency_key", "")
        level = 200.0 * math.exp(_rng(self.spec.seed, "analytics", key).gauss(0.0, 1.0))
        out = []
        for n, d in enumerate(days):
            r = _rng(self.spec.seed, "analytics", key, d.isoformat())
            views = int(level * 0.8**n * math.exp(r.gauss(0.0, 0.3)))
            out.append({"date": d.isoformat(), "views": views, "engagement": int(views * 0.05),
                        "revenue": round(views * 0.003, 6)})  # fmt: skip
        return out

    async def poll(self, account: str, provider_job_id: str) -> PollResult:
        job = self._by_key.get(provider_job_id)
        if job is None:
            raise BadRequest(f"{self.name}/{account} poll: HTTP 404")
        if self._now() < job.done_at:
            return PollResult("running")
        return PollResult("done", dict(job.meta), result_url=f"sim://{self.name}/{job.key}")

    async def fetch(self, account: str, result: PollResult) -> bytes:
        if not result.result_url:
            raise BadRequest(f"{self.name}/{account} fetch: no result")
        return simulated_audio(result.result_url.rsplit("/", 1)[-1])

    def ignores_idempotency(self) -> bool:
        return False  # it answers a replayed key with the job it made

    def can_look_up(self) -> bool:
        return False

    async def lookup(self, account: str, key: str) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
