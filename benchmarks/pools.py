"""Generation pools: throughput at the accounts' limits, without going over, without losing or
duplicating a job; with and without faults; two processes sharing Redis. One JSON line.

Against the fake provider (tests/fakes/provider.py) in its own process, serving real HTTP on
127.0.0.1: it enforces each key's requests/min (token bucket, burst) and concurrency, answers
429 + Retry-After beyond them (`over_limit`), injects faults (503s, a dead key answering 401) and
records every submission per idempotency key.

Scenarios (10,000 jobs over 5 accounts each, by default):
- clean:  one dispatcher, no faults;
- faults: 10 % of submissions answered 503, one of the 5 keys dead (401);
- redis:  two `empire pools run` processes on one queue, limits shared through Redis (the
          EMPIRE_TEST_REDIS_URL server, else a throwaway `redis-server` when installed, else skipped);
- cpu:    the dispatcher's CPU per job at 10 and at 250 jobs/s (accounts allowing just that,
          the daemon's dispatcher options), side by side (not by default);
- sliding, fixed: a provider counting 120 requests per minute per key in a rolling or a
          wall-clock window (5 keys, 4 jobs at once each, 1,200 jobs: ideal about 67 s), with the
          account's limit_model set to match, and left at token_bucket to compare (not by default).

Reported per scenario:
- throughput_ratio: jobs accepted / the most the live accounts allowed during the submission
  window (sum of rate * window + burst). With 10 % 503s, every failed submission also spends a
  token, so the faults scenario's ceiling is about 0.9; `request_ratio` counts every request;
- over_limit: requests the provider rejected for exceeding a limit the pool was told (target 0);
- duplicates: submissions of a key the provider had already accepted (target 0); lost: jobs
  enqueued but never accepted, or not succeeded in the DB (target 0);
- overhead_ms_per_job: the dispatcher process's CPU time per job (HTTP client, routing, limiter,
  SQLite writes; everything but the provider).

    .venv/bin/python benchmarks/pools.py [--jobs 10000] [--rpm 3000] [--scenarios clean,faults,redis]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from empire.agent.pools.build import build_dispatcher  # noqa: E402
from empire.agent.pools.dispatcher import DispatcherOptions  # noqa: E402
from empire.agent.pools.jobs import NewJob  # noqa: E402
from empire.policies.schema import parse_policy  # noqa: E402
from empire.state.database import Database  # noqa: E402
from empire.state.jobs import SqlJobQueue  # noqa: E402
from fakes.provider import fake_provider_process, http_provider_policy  # noqa: E402

ACCOUNTS = 5
LATENCY = 0.2


# What the benchmark set before the defaults held under faults (--tuned): kept to compare.
TUNED = {
    "retry": {"max_attempts": 10, "backoff_base": "50ms", "backoff_max": "1s"},
    "cooldown": {"server_errors": 5, "failures": 8, "duration": "3s", "after_auth_failure": "10m"},
}


def _provider(
    url: str, rpm: float, max_concurrent: int, tuned: bool = False, model: str | None = None
) -> dict[str, Any]:
    """The policy's defaults for retries and the breaker, unless `tuned`; `model`: limit_model."""
    accounts = [{"name": f"acct-{i}", "env": f"BENCH_KEY_{i}", "requests_per_minute": rpm,
                 "max_concurrent": max_concurrent, **({"limit_model": model} if model else {})}
                for i in range(ACCOUNTS)]  # fmt: skip
    return http_provider_policy(url, "bench", accounts, poll_interval="100ms", **(TUNED if tuned else {}))


def _fake_config(
    rpm: float, max_concurrent: int, error_rate: float, dead: int | None, window: str | None = None
) -> dict[str, Any]:
    keys = {f"key-{i}": {"rpm": rpm, "max_concurrent": max_concurrent, "dead": i == dead, "window": window}
            for i in range(ACCOUNTS)}  # fmt: skip
    return {"keys": keys, "latency": LATENCY, "error_rate": error_rate, "seed": 7}


def _env() -> None:
    for i in range(ACCOUNTS):
        os.environ[f"BENCH_KEY_{i}"] = f"key-{i}"


async def _enqueue(url: str, n: int) -> list[str]:
    db = await Database.open(url)
    try:
        keys = [f"bench-{i}" for i in range(n)]
        await SqlJobQueue(db).enqueue([NewJob(k, "bench", {"prompt": f"song {k}"}) for k in keys], datetime.now(UTC))
        return keys
    finally:
        await db.close()


async def _succeeded(url: str) -> int:
    db = await Database.open(url)
    try:
        return sum(n for (s, _), n in (await SqlJobQueue(db).counts()).items() if s == "succeeded")
    finally:
        await db.close()


def _summary(keys: list[str], books: dict[str, Any], succeeded: int, rpm: float, live: int, burst: float,
             cpu: float, wall: float) -> dict[str, Any]:  # fmt: skip
    window = (books["last_accept"] or 0) - (books["first_accept"] or 0)
    allowed = live * (rpm / 60.0) * window + live * burst
    requests_within = books["submissions"] - books["over_limit"] - books["unauthorized"]
    accepted_keys = set(books["keys"])
    return {
        "jobs": len(keys), "accepted": books["accepted"], "seconds": round(wall, 2),
        "submit_window_s": round(window, 2), "jobs_per_s": round(books["accepted"] / window, 1) if window else None,
        "limit_per_s": live * rpm / 60.0,
        "throughput_ratio": round(books["accepted"] / allowed, 4) if allowed else None,
        "request_ratio": round(requests_within / allowed, 4) if allowed else None,
        "over_limit": books["over_limit"], "duplicates": books["duplicates"],
        "lost": len(set(keys) - accepted_keys) + (len(keys) - succeeded),
        "server_errors": books["server_errors"], "unauthorized": books["unauthorized"],
        "http_requests_per_job": round(books["requests"] / len(keys), 2),
        "overhead_ms_per_job": round(1000 * cpu / len(keys), 3),
    }  # fmt: skip


def run_in_process(
    n: int, rpm: float, error_rate: float, dead: int | None, tuned: bool = False, max_concurrent: int = 100,
    window: str | None = None, model: str | None = None, options: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`window`: the fake's "sliding"/"fixed" limit instead of a token bucket; `model`: the policy's;
    `options`: DispatcherOptions fields instead of the benchmark's (400 in flight, 50 ms idle poll)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_provider_process(_fake_config(rpm, max_concurrent, error_rate, dead, window)) as (url, stats),
    ):
        db_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        policy = parse_policy({"providers": [_provider(url, rpm, max_concurrent, tuned, model)]})
        keys = asyncio.run(_enqueue(db_url, n))

        async def go() -> tuple[float, float]:
            db = await Database.open(db_url)
            try:
                fields = {"max_in_flight": 400, "idle_poll": 0.05} if options is None else options
                opts = DispatcherOptions(owner="bench", stop_when_empty=True, **fields)
                d = build_dispatcher(policy, SqlJobQueue(db), opts)
                t0, c0 = time.monotonic(), time.process_time()
                await d.run()
                cpu, wall = time.process_time() - c0, time.monotonic() - t0
                await d.aclose()
                return cpu, wall
            finally:
                await db.close()

        cpu, wall = asyncio.run(go())
        books = stats(keys=True)
        live = ACCOUNTS - (1 if dead is not None else 0)
        return _summary(keys, books, asyncio.run(_succeeded(db_url)), rpm, live, _burst(rpm), cpu, wall)


def cpu_at(rate: float, seconds: float) -> dict[str, Any]:
    """`rate` jobs/s through 5 accounts that allow exactly that (token bucket, 100 at once each),
    `rate * seconds` jobs, the daemon's dispatcher options (`DispatcherOptions` defaults): what a
    job costs the dispatcher when the pool is mostly waiting, against when it is busy."""
    rpm = rate * 60.0 / ACCOUNTS
    out = run_in_process(int(rate * seconds), rpm, 0.0, None, options={})
    return {k: out[k] for k in ("jobs", "seconds", "jobs_per_s", "throughput_ratio", "http_requests_per_job",
                                "overhead_ms_per_job", "over_limit", "lost")}  # fmt: skip


def _burst(rpm: float) -> float:
    return max(1.0, rpm / 60.0)  # the policy's default burst: one second of rate (the fake allows it)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _redis():  # type: ignore[no-untyped-def]
    url = os.environ.get("EMPIRE_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/15"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_two_processes(n: int, rpm: float, redis_url: str) -> dict[str, Any]:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    max_concurrent = 100
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_provider_process(_fake_config(rpm, max_concurrent, 0.0, None)) as (url, stats),
    ):
        db_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(yaml.safe_dump({"providers": [_provider(url, rpm, max_concurrent)]}))
        keys = asyncio.run(_enqueue(db_url, n))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMPIRE_")}
        env.update(EMPIRE_DATABASE_URL=f"sqlite:///{tmp}/bench.db", EMPIRE_DATA_DIR=tmp, EMPIRE_REDIS_URL=redis_url,
                   PYTHONPATH=str(ROOT / "src"))  # fmt: skip
        cmd = [sys.executable, "-m", "empire.cli", "pools", "run", "--policy", str(policy), "--drain", "--no-publish",
               "--max-in-flight", "300"]  # fmt: skip
        t0 = time.monotonic()
        # output goes to files: a pipe nobody reads while waiting for the other process fills up and
        # blocks its writer (mid-transaction, holding SQLite's lock: both processes would then hang)
        logs = [(Path(tmp) / f"out-{i}.txt", Path(tmp) / f"err-{i}.txt") for i in range(2)]
        procs = []
        for i, (out_path, err_path) in enumerate(logs):
            with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
                procs.append(subprocess.Popen([*cmd, "--owner", f"bench-{i}"], env=env, stdout=out_f, stderr=err_f))
        for p in procs:
            p.wait(timeout=600)
        wall = time.monotonic() - t0
        for p, (_, err_path) in zip(procs, logs, strict=True):
            if p.returncode != 0:
                raise RuntimeError(f"pools run failed: {err_path.read_text()[-2000:]}")
        per = [json.loads(out_path.read_text().strip().splitlines()[-1]) for out_path, _ in logs]
        books = stats(keys=True)
        out = _summary(keys, books, asyncio.run(_succeeded(db_url)), rpm, ACCOUNTS, _burst(rpm),
                       sum(p["cpu_seconds"] for p in per), wall)  # fmt: skip
        out["per_process_succeeded"] = [p["succeeded"] for p in per]
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rpm", type=float, default=3000.0, help="requests/min per account (5 accounts)")
    ap.add_argument("--scenarios", default="clean,faults,redis")
    ap.add_argument("--cpu-seconds", type=float, default=20.0, help="cpu: seconds of jobs at each rate")
    ap.add_argument("--compare", action="store_true", help="sliding/fixed: also run with limit_model token_bucket")
    ap.add_argument(
        "--tuned", action="store_true", help="the retry/breaker settings tuned before (TUNED), not defaults"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the dead key's cooldown warning is expected here
    _env()
    results: dict[str, Any] = {"benchmark": "pools", "accounts": ACCOUNTS, "rpm_per_account": args.rpm,
                               "latency_s": LATENCY, "cpus": os.cpu_count(),
                               "settings": "tuned (TUNED)" if args.tuned else "policy defaults"}  # fmt: skip
    for name in args.scenarios.split(","):
        if name == "clean":
            results["clean"] = run_in_process(args.jobs, args.rpm, 0.0, None)
        elif name == "faults":
            results["faults"] = run_in_process(args.jobs, args.rpm, 0.10, dead=ACCOUNTS - 1, tuned=args.tuned)
        elif name in ("sliding", "fixed"):  # 5 keys x 120/min, 4 at once, 1,200 jobs: ideal about 67 s
            results[name] = {
                model: run_in_process(1200, 120.0, 0.0, None, max_concurrent=4, window=name, model=model)
                for model in (f"{name}_window", *(("token_bucket",) if args.compare else ()))
            }  # fmt: skip
        elif name == "cpu":  # the dispatcher's CPU per job at a low and a high rate, side by side
            results["cpu"] = {f"{rate}_jobs_per_s": cpu_at(rate, args.cpu_seconds) for rate in (10, 250)}
        elif name == "redis":
            with _redis() as url:
                results["redis"] = (
                    run_two_processes(args.jobs, args.rpm, url) if url else {"skipped": "no Redis (set EMPIRE_TEST_REDIS_URL)"}
                )  # fmt: skip
        else:
            raise SystemExit(f"unknown scenario {name!r} (valid: clean, faults, redis, sliding, fixed)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
