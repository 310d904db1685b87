"""Dead keys (401/403) against a real HTTP provider on 127.0.0.1 (tests/fakes/provider.py) and the
simulated provider, on SQLite and PostgreSQL.

One dead key among live ones costs no job anything (the job re-routes, its attempts untouched).
When every key a job may use (its provider's accounts and its fallbacks') is rejected, waiting
cannot help: the job is dead-lettered with the 401, and `empire pools run --drain` ends. A job
that waits out an ordinary cooldown still waits, and its row says what it waits for. Operators see a
rejected key as the gauge `empire_pool_account_key_rejected`, until the key is seen working again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from empire.agent.monitor import Monitor
from empire.agent.pools.build import build_dispatcher
from empire.agent.pools.dispatcher import Dispatcher, DispatcherOptions
from empire.agent.pools.jobs import Job, JobState, NewJob
from empire.agent.pools.metrics import PoolMetrics
from empire.policies.schema import Policy, parse_policy
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue
from fakes.provider import TEST_KEYS as KEYS
from fakes.provider import FakeKey, FakeProvider, http_provider_policy


def accounts(names: str, rpm: float = 6000, max_concurrent: int = 10) -> list[dict[str, Any]]:
    return [{"name": n, "env": f"TEST_KEY_{n.upper()}", "requests_per_minute": rpm, "max_concurrent": max_concurrent}
            for n in names]  # fmt: skip


def options(**kw: Any) -> DispatcherOptions:
    base: dict[str, Any] = {"owner": "test", "max_in_flight": 100, "stop_when_empty": True, "idle_poll": 0.05,
                            "lease_seconds": 30, "seed": 1}  # fmt: skip
    return DispatcherOptions(**{**base, **kw})


async def enqueue(db: Database, n: int, provider: str) -> None:
    await SqlJobQueue(db).enqueue(
        [NewJob(f"job-{i}", provider, {"prompt": f"song {i}", "persona": "luna"}, "luna") for i in range(n)],
        datetime.now(UTC),
    )


async def all_jobs(db: Database) -> list[Job]:
    return await SqlJobQueue(db).list(limit=1000)


async def drain(d: Dispatcher, seconds: float) -> None:
    try:
        with anyio.fail_after(seconds):
            await d.run()
    finally:
        await d.aclose()


async def dispatch_all(
    db: Database, fake: FakeProvider, provider: str, names: str, *, jobs: int, seconds: float
) -> tuple[Dispatcher, dict[str, Any]]:
    """Serve the fake, queue `jobs` for `provider` (accounts `names`), drain them; the dispatcher
    and the provider's books."""
    with fake.serve():
        policy = parse_policy({"providers": [http_provider_policy(fake.url, provider, accounts(names))]})
        await enqueue(db, jobs, provider)
        d = build_dispatcher(policy, SqlJobQueue(db), options())
        await drain(d, seconds)
        return d, fake.snapshot()


@pytest.fixture
def every_key_dead() -> Iterator[FakeProvider]:
    fake = FakeProvider(keys={k: FakeKey(rpm=6000, dead=True) for k in KEYS.values()}, latency=0.05)
    with fake.serve():
        yield fake


def dead_policy(url: str) -> Policy:
    primary = http_provider_policy(url, "main", accounts("ab"), fallback=["backup"])
    return parse_policy({"providers": [primary, http_provider_policy(url, "backup", accounts("c"))]})


@pytest.mark.anyio
async def test_every_key_rejected_dead_letters_with_the_401(
    database: Database, every_key_dead: FakeProvider, keys_env: dict
) -> None:
    await enqueue(database, 40, "main")
    d = build_dispatcher(dead_policy(every_key_dead.url), SqlJobQueue(database), options())
    t0 = time.monotonic()
    await drain(d, 20)  # the drain ends: nothing is left waiting for an account that will never come
    assert time.monotonic() - t0 < 10
    jobs = await all_jobs(database)
    assert len(jobs) == 40 and {j.state for j in jobs} == {JobState.dead}
    for j in jobs:
        assert j.error_class == "auth" and j.attempts == 1 and j.finished_at is not None
        assert j.last_error is not None and j.last_error.startswith("every key was rejected: ")
        for account in ("main/a", "main/b", "backup/c"):  # its provider's accounts and the fallback's
            assert f"{account} submit: HTTP 401" in j.last_error
    s = every_key_dead.snapshot()
    # each account is asked until its key is rejected (at most its concurrency), then not again
    assert s["accepted"] == 0 and 3 <= s["unauthorized"] <= 30
    assert d.stats["dead"] == 40 and d.stats["succeeded"] == 0
    breakers = d.breakers()
    assert set(breakers) == {"main/a", "main/b", "backup/c"}
    assert {b["state"] for b in breakers.values()} == {"key_rejected"}


@pytest.mark.anyio
async def test_one_dead_key_among_live_ones_costs_no_job_anything(database: Database, keys_env: dict) -> None:
    fake = FakeProvider(keys={v: FakeKey(rpm=6000) for v in KEYS.values()}, latency=0.05)
    fake.keys[KEYS["b"]].dead = True
    d, s = await dispatch_all(database, fake, "fake", "abc", jobs=90, seconds=30)
    jobs = await all_jobs(database)
    assert {j.state for j in jobs} == {JobState.succeeded} and len(jobs) == 90
    assert {j.account for j in jobs} == {"a", "c"}
    assert all(j.attempts == 0 and j.last_error is None for j in jobs)  # a re-route spends no attempt
    assert s["accepted"] == 90 and s["duplicates"] == 0 and s["unauthorized"] >= 1
    assert d.stats["rerouted"] == s["unauthorized"] and d.stats["dead"] == 0
    assert set(d.breakers()) == {"fake/b"} and d.breakers()["fake/b"]["state"] == "key_rejected"


@pytest.mark.anyio
async def test_a_rerouted_job_notes_the_rejection_until_it_succeeds(database: Database, keys_env: dict) -> None:
    fake = FakeProvider(keys={KEYS["a"]: FakeKey(rpm=6000, dead=True), KEYS["b"]: FakeKey(rpm=6000)}, latency=2.0)
    with fake.serve():
        policy = parse_policy({"providers": [http_provider_policy(fake.url, "main", accounts("ab"))]})
        await enqueue(database, 1, "main")  # least-busy ties go to the first account: a, the dead one
        d = build_dispatcher(policy, SqlJobQueue(database), options())
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, d, 30)
            with anyio.fail_after(10):
                while (job := (await all_jobs(database))[0]).state is not JobState.submitted:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            # on b now, and its row says why it is not on a
            assert job.account == "b" and job.attempts == 0
            assert job.last_error == "main/a submit: HTTP 401; re-routed" and job.error_class == "auth"
    (job,) = await all_jobs(database)
    assert job.state is JobState.succeeded and job.last_error is None and job.error_class is None


@pytest.mark.anyio
async def test_a_dead_key_and_an_ordinary_cooldown_wait_instead_of_dead_lettering(
    database: Database, keys_env: dict
) -> None:
    # key a is dead; the provider enforces 10/s (burst 10) on key b although the policy says 100/s:
    # b's 429s cool it for their Retry-After (1 s) again and again, and every job must wait for it
    fake = FakeProvider(keys={KEYS["a"]: FakeKey(rpm=6000, dead=True), KEYS["b"]: FakeKey(rpm=600, burst=10)},
                        latency=0.05)  # fmt: skip
    d, s = await dispatch_all(database, fake, "main", "ab", jobs=40, seconds=60)
    jobs = await all_jobs(database)
    assert {j.state for j in jobs} == {JobState.succeeded} and len(jobs) == 40
    assert s["over_rate"] >= 1 and s["unauthorized"] >= 1  # both kinds of cooldown happened
    assert d.pools.states["main/b"].cooldowns and d.stats["dead"] == 0


@pytest.mark.anyio
async def test_a_waiting_job_says_what_it_waits_for(database: Database, keys_env: dict) -> None:
    # key a is dead; key b takes one job, then answers 429 with Retry-After 60 s: the rest wait
    fake = FakeProvider(keys={KEYS["a"]: FakeKey(rpm=6000, dead=True), KEYS["b"]: FakeKey(rpm=1, burst=1)},
                        latency=0.05)  # fmt: skip
    with fake.serve():
        policy = parse_policy({"providers": [http_provider_policy(fake.url, "main", accounts("ab"))]})
        await enqueue(database, 6, "main")
        d = build_dispatcher(policy, SqlJobQueue(database), options(stop_when_empty=False))

        def waiting(jobs: list[Job]) -> list[Job]:
            return [j for j in jobs if j.state is not JobState.succeeded and j.last_error]

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, d, 30)
            with anyio.fail_after(15):
                while True:
                    jobs = await all_jobs(database)
                    if len(waiting(jobs)) == 5 and any(j.state is JobState.succeeded for j in jobs):
                        break
                    await anyio.sleep(0.05)
            stopped = time.monotonic()
            d.stop()
        assert time.monotonic() - stopped < 5  # waiting jobs give up their wait at once on stop
    jobs = await all_jobs(database)
    assert sorted(j.state.value for j in jobs) == ["queued"] * 5 + ["succeeded"]
    for j in waiting(jobs):
        assert j.last_error is not None and j.attempts == 0 and j.error_class == "rate_limited"
        assert j.last_error.startswith("every account cools down: main/b submit: HTTP 429 (until")
        assert "main/a submit: HTTP 401 (key rejected)" in j.last_error


@pytest.mark.anyio
async def test_the_key_rejected_gauge_follows_the_breaker(database: Database, keys_env: dict) -> None:
    """1 from the 401 on, through the cooldown, until a probe gets past authentication: a success
    (key a) or any other answer, here a 429 (key b)."""
    fake = FakeProvider(keys={KEYS["a"]: FakeKey(rpm=6000, dead=True),
                              KEYS["b"]: FakeKey(rpm=6000, dead=True, max_concurrent=0)}, latency=0.05)  # fmt: skip
    rests = {"cooldown": {"after_auth_failure": "500ms"}}
    with fake.serve():
        policy = parse_policy({"providers": [http_provider_policy(fake.url, "main", accounts("a"), **rests),
                                             http_provider_policy(fake.url, "spare", accounts("b"), **rests)]})  # fmt: skip
        registry = CollectorRegistry()
        # a heartbeat every 200 s: the gauge must follow the breaker itself, not a periodic refresh
        d = build_dispatcher(policy, SqlJobQueue(database), options(stop_when_empty=False, lease_seconds=600),
                             metrics=Monitor(registry).group(PoolMetrics))  # fmt: skip

        def gauges() -> tuple[float | None, ...]:
            return tuple(registry.get_sample_value("empire_pool_account_key_rejected", {"provider": p, "account": a})
                         for p, a in (("main", "a"), ("spare", "b")))  # fmt: skip

        async def submit(key: str, provider: str) -> None:
            await SqlJobQueue(database).enqueue([NewJob(key, provider, {"prompt": key}, "luna")], datetime.now(UTC))

        async def until(check: Callable[[], Awaitable[bool]]) -> None:
            with anyio.fail_after(10):
                while not await check():  # noqa: ASYNC110 (polls the registry and the state DB)
                    await anyio.sleep(0.02)

        def gauges_are(*want: float) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return gauges() == want

            return check

        def jobs_are(**want: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return {j.idempotency_key: j.state.value for j in await all_jobs(database)} == want

            return check

        async def cooled_down() -> bool:
            return not any(st.cooling(time.monotonic()) for st in d.pools.states.values())

        assert gauges() == (0, 0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, d, 30)
            await submit("first_a", "main")
            await submit("first_b", "spare")
            await until(gauges_are(1, 1))
            await until(jobs_are(first_a="dead", first_b="dead"))  # the only key of each: waiting cannot help
            fake.keys[KEYS["a"]].dead = False  # a rotated key: accepted again
            await until(cooled_down)
            assert gauges() == (1, 1)  # the cooldown is over, but no answer has shown a key working yet
            await submit("second_a", "main")
            await until(jobs_are(first_a="dead", first_b="dead", second_a="succeeded"))
            assert gauges() == (0, 1)  # a's probe succeeded; b was not asked
            fake.keys[KEYS["b"]].dead = False  # accepted, but b answers 429 (no concurrency left)
            await submit("second_b", "spare")
            await until(gauges_are(0, 0))  # a 429 got past authentication
            # b's job waits out the 429s on its lease, as any job on a cooling account does
            await until(jobs_are(first_a="dead", first_b="dead", second_a="succeeded", second_b="leased"))
            d.stop()
        text = generate_latest(registry).decode()
    assert fake.snapshot()["over_concurrency"] >= 1 and d.stats["dead"] == 2
    assert 'empire_pool_account_key_rejected{account="a",provider="main"} 0.0' in text
    assert not any(key in text for key in KEYS.values())  # no key in a label


def test_pools_run_drain_ends_on_a_queue_of_dead_keys(database_url: str, tmp_path: Path) -> None:
    """The real CLI process (simulated provider, every account's key dead) exits, and `jobs list`
    shows why each job died."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump({
        "providers": [
            {"name": "sim", "kind": "simulated", "fallback": ["spare"], "accounts": [
                {"name": "s1", "requests_per_minute": 6000}, {"name": "s2", "requests_per_minute": 6000}],
             "simulated": {"seed": 1, "latency_mean": "50ms", "latency_sd": "10ms", "dead_accounts": ["s1", "s2"]}},
            {"name": "spare", "kind": "simulated", "accounts": [{"name": "x1", "requests_per_minute": 6000}],
             "simulated": {"seed": 2, "dead_accounts": ["x1"]}},
        ],
        "personas": [{"name": "nova", "genres": ["house"], "providers": ["sim"]}],
    }))  # fmt: skip

    async def setup() -> None:
        db = await Database.open(database_url)
        try:
            await enqueue(db, 25, "sim")
        finally:
            await db.close()

    anyio.run(setup)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPIRE_")}
    env.update(EMPIRE_DATABASE_URL=database_url, EMPIRE_DATA_DIR=str(tmp_path / "data"))
    cli = [sys.executable, "-m", "empire.cli"]
    t0 = time.monotonic()
    run = subprocess.run([*cli, "pools", "run", "--policy", str(policy_file), "--drain"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - t0 < 30
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    assert stats["dead"] == 25 and stats["succeeded"] == 0
    assert {k: b["state"] for k, b in stats["breakers"].items()} == dict.fromkeys(
        ("sim/s1", "sim/s2", "spare/x1"), "key_rejected"
    )
    assert "account sim/s1: key rejected (sim/s1 submit: HTTP 401)" in run.stderr
    listed = subprocess.run([*cli, "jobs", "list", "--state", "dead", "--format", "json"], env=env,
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    dead = json.loads(listed.stdout)
    assert len(dead) == 25
    assert all(j["error_class"] == "auth" and "sim/s1 submit: HTTP 401" in j["last_error"] for j in dead)
    text = subprocess.run([*cli, "jobs", "list", "--state", "dead", "--limit", "1"], env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    assert "[auth] every key was rejected: sim/s1 submit: HTTP 401" in text
