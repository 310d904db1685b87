"""A fake generation API over real HTTP on 127.0.0.1, for the pool tests and `benchmarks/pools.py`.

It behaves like a strict provider and keeps the books a test needs:
- per-key token bucket (requests/min, burst), or `window` "sliding"/"fixed" (at most rpm in any
  60 s, or per wall-clock minute), and per-key concurrency; excess -> 429 with
  Retry-After, counted in `over_limit` (the pool knew those limits: they are its policy's);
- faults: `error_rate` of submissions answered 503 (before accepting), `dead_keys` answered 401;
- idempotency: a resubmitted key returns the job it created; every submission is recorded per key,
  so `duplicates` (submissions of a key already accepted) and `lost` (enqueued keys never
  accepted) are counted by the provider, not by the pool under test.

Run it in-process (`FakeProvider(...).serve()` starts uvicorn in a thread) or as a separate
process (`python tests/fakes/provider.py --config '{...}'` prints `PORT <n>`), which is what the
benchmark does so that the fake does not share a CPU with the dispatcher it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["REJECT", "TEST_KEYS", "FakeKey", "FakeProvider", "fake_provider_process", "http_provider_policy"]

REJECT = "__reject__"  # a prompt the fake answers 422 (a permanent error)
# Keys for accounts a, b, c; the `keys_env` fixture (tests/integration/conftest.py) exports them
# as TEST_KEY_A.. so a policy can reference them as {env: TEST_KEY_A}.
TEST_KEYS = {"a": "sk-test-alpha-123", "b": "sk-test-bravo-456", "c": "sk-test-charlie-789"}


@dataclass
class FakeKey:
    rpm: float
    burst: float | None = None
    max_concurrent: int = 1_000_000
    dead: bool = False
    window: str | None = None  # "sliding" or "fixed": rpm per 60 s instead of the token bucket
    tokens: float = -1.0
    ts: float = 0.0
    sent: list[float] = field(default_factory=list)  # accepted submissions' times (windows)

    def take(self, now: float) -> float:
        if self.window is not None:
            limit, wall = int(self.rpm), time.time()
            if self.window == "sliding":
                self.sent = [t for t in self.sent if t > now - 60.0]
                wait = self.sent[0] + 60.0 - now if len(self.sent) >= limit else 0.0
            else:
                self.sent = [t for t in self.sent if t // 60 == wall // 60]
                wait = 60.0 - wall % 60 if len(self.sent) >= limit else 0.0
                now = wall
            if wait <= 0:
                self.sent.append(now)
            return max(0.0, wait)
        rate = self.rpm / 60.0
        cap = self.burst if self.burst is not None else max(1.0, rate)
        if self.tokens < 0:
            self.tokens, self.ts = cap, now
        self.tokens = min(cap, self.tokens + (now - self.ts) * rate)
        self.ts = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


@dataclass
class _Job:
    id: str
    key: str
    api_key: str
    done_at: float
    body: dict[str, Any]


@dataclass
class FakeProvider:
    keys: dict[str, FakeKey]
    latency: float = 0.2
    latency_jitter: float = 0.0
    error_rate: float = 0.0
    seed: int = 1
    done_status: str = "succeeded"  # what a finished job's status says
    # False: a replayed Idempotency-Key creates another job (counted in `duplicates`); jobs are
    # found by the body's "reference" at GET /v1/jobs?reference=... ({"data": [{"id": ...}]})
    honour_idempotency: bool = True
    submit_delay: float = 0.0  # seconds between accepting a job and answering the submission
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.jobs: dict[str, _Job] = {}
        self.by_key: dict[str, _Job] = {}
        self.by_reference: dict[str, _Job] = {}
        self.submissions: dict[str, int] = {}
        self.running: dict[str, list[float]] = {k: [] for k in self.keys}
        self.reset_stats()
        self.app = Starlette(
            routes=[
                Route("/v1/jobs", self._submit, methods=["POST"]),
                Route("/v1/jobs", self._lookup, methods=["GET"]),
                Route("/v1/jobs/{id}", self._poll, methods=["GET"]),
                Route("/v1/results/{id}", self._result, methods=["GET"]),
                Route("/_stats", self._stats, methods=["GET"]),
            ]
        )
        self.url = ""

    def reset_stats(self) -> None:
        self.stats = {
            "requests": 0, "submissions": 0, "accepted": 0, "duplicates": 0, "over_limit": 0,
            "over_rate": 0, "over_concurrency": 0, "server_errors": 0, "unauthorized": 0,
            "first_accept": None, "last_accept": None, "peak_concurrency": {k: 0 for k in self.keys},
            "accepted_by_key": {k: 0 for k in self.keys},
        }  # fmt: skip

    # -- handlers ---------------------------------------------------------------------------
    def _api_key(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    async def _submit(self, request: Request) -> Response:
        now = time.monotonic()
        body = await request.json()
        api_key = self._api_key(request)
        idem = request.headers.get("idempotency-key")
        with self._lock:
            s = self.stats
            s["requests"] += 1
            s["submissions"] += 1
            spec = self.keys.get(api_key or "")
            if spec is None or spec.dead:
                s["unauthorized"] += 1
                return JSONResponse({"error": "invalid api key"}, status_code=401)
            if not idem:
                return JSONResponse({"error": "Idempotency-Key required"}, status_code=400)
            if body.get("prompt") == REJECT:
                return JSONResponse({"error": "prompt violates the content policy"}, status_code=422)
            wait = spec.take(now)
            if wait > 0:
                s["over_limit"] += 1
                s["over_rate"] += 1
                return JSONResponse({"error": "rate limited"}, 429, {"Retry-After": str(max(1, math.ceil(wait)))})
            existing = self.by_key.get(idem)
            if existing is not None and not self.honour_idempotency:
                s["duplicates"] += 1  # generated again: what exactly-once must prevent
                existing = None
            elif existing is not None:
                s["duplicates"] += 1
                self.submissions[idem] = self.submissions.get(idem, 0) + 1
                return JSONResponse(self._view(existing, now))
            running = [t for t in self.running[api_key] if t > now]
            self.running[api_key] = running
            if len(running) >= spec.max_concurrent:
                s["over_limit"] += 1
                s["over_concurrency"] += 1
                return JSONResponse({"error": "too many jobs"}, 429, {"Retry-After": "1"})
            if self.error_rate and self._rng.random() < self.error_rate:
                s["server_errors"] += 1
                return JSONResponse({"error": "unavailable"}, status_code=503)
            latency = self.latency + (self._rng.uniform(0, self.latency_jitter) if self.latency_jitter else 0.0)
            job = _Job(f"j{len(self.jobs) + 1}", idem, api_key, now + latency, body)
            self.jobs[job.id] = job
            self.by_key[idem] = job
            if body.get("reference"):
                self.by_reference[str(body["reference"])] = job
            self.submissions[idem] = self.submissions.get(idem, 0) + 1
            running.append(job.done_at)
            s["peak_concurrency"][api_key] = max(s["peak_concurrency"][api_key], len(running))
            s["accepted"] += 1
            s["accepted_by_key"][api_key] += 1
            s["first_accept"] = now if s["first_accept"] is None else s["first_accept"]
            s["last_accept"] = now
            view = self._view(job, now)
        if self.submit_delay:  # accepted; the answer is late (a kill -9 may come before it)
            await asyncio.sleep(self.submit_delay)
        return JSONResponse(view, status_code=202)

    async def _lookup(self, request: Request) -> Response:
        with self._lock:
            self.stats["requests"] += 1
            self.stats["lookups"] = self.stats.get("lookups", 0) + 1
            job = self.by_reference.get(request.query_params.get("reference", ""))
            found = job is not None and job.api_key == self._api_key(request)
            return JSONResponse({"data": [{"id": job.id}] if found and job else []})

    def _view(self, job: _Job, now: float) -> dict[str, Any]:
        if now < job.done_at:
            return {"id": job.id, "status": "running"}
        prompt = str(job.body.get("prompt", ""))
        return {
            "id": job.id, "status": self.done_status,
            "result": {"url": f"{self.url}/v1/results/{job.id}", "title": f"Track {job.key}", "score": 0.99,
                       "persona": job.body.get("persona", ""), "genre": job.body.get("genre", ""),
                       "prompt": prompt},
        }  # fmt: skip

    async def _poll(self, request: Request) -> Response:
        with self._lock:
            self.stats["requests"] += 1
            job = self.jobs.get(request.path_params["id"])
            if job is None or job.api_key != self._api_key(request):
                return JSONResponse({"error": "not found"}, status_code=404)
            return JSONResponse(self._view(job, time.monotonic()))

    async def _result(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(b"RIFF" + job.key.encode() * 8, media_type="audio/wav")

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.snapshot(with_keys="keys" in request.query_params))

    def snapshot(self, with_keys: bool = False) -> dict[str, Any]:
        with self._lock:
            out = json.loads(json.dumps(self.stats))
            if with_keys:
                out["keys"] = dict(self.submissions)
        return out

    # -- serving ----------------------------------------------------------------------------
    @contextmanager
    def serve(self, port: int = 0):  # type: ignore[no-untyped-def]
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                access_log=False, backlog=2048)  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("fake provider did not start")
            time.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{bound}"
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def http_provider_policy(
    url: str, name: str, accounts: list[dict[str, Any]], poll_interval: str = "100ms", **provider: Any
) -> dict[str, Any]:
    """A policy `providers[]` entry for the fake; `accounts` items: name, env (the key's variable),
    requests_per_minute, burst, max_concurrent, cost_per_job, limit_model."""
    return {
        "name": name, "kind": "http",
        "http": {"submit_url": f"{url}/v1/jobs", "poll_url": f"{url}/v1/jobs/{{job_id}}",
                 "body_template": {"prompt": "{prompt}", "persona": "{persona}", "genre": "{genre}"},
                 "poll_interval": poll_interval, "timeout": "10s", "job_timeout": "2m"},
        "accounts": [
            {"name": a["name"], "api_key": {"env": a["env"]},
             **{k: a[k] for k in ("requests_per_minute", "burst", "max_concurrent", "cost_per_job", "limit_model")
                if k in a}}
            for a in accounts
        ],
        **provider,
    }  # fmt: skip


@contextmanager
def fake_provider_process(config: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Run the fake in its own process; yields (url, stats()) where stats() fetches /_stats."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--config", json.dumps(config)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake provider failed to start: {line!r}")
        url = f"http://127.0.0.1:{line.split()[1]}"

        def stats(keys: bool = False) -> dict[str, Any]:
            return httpx.get(f"{url}/_stats" + ("?keys=1" if keys else ""), timeout=30).json()

        yield url, stats
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def from_config(config: dict[str, Any]) -> FakeProvider:
    keys = {k: FakeKey(**v) for k, v in config["keys"].items()}
    return FakeProvider(keys=keys, **{k: v for k, v in config.items() if k != "keys"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="fake generation provider")
    ap.add_argument("--config", required=True, help="JSON: {keys: {KEY: {rpm, burst, max_concurrent, dead}}, ...}")
    args = ap.parse_args()
    fake = from_config(json.loads(args.config))
    with fake.serve():
        print(f"PORT {fake.url.rsplit(':', 1)[1]}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
