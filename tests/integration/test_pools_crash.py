"""kill -9 in the middle of dispatching, restart: every job completes exactly once.

A real `empire pools run` process works a SQLite queue against the fake provider (real HTTP on
127.0.0.1), is SIGKILLed while jobs are in flight, and a second process takes over after the
leases expire. The provider's own books (submissions per idempotency key) prove the outcome:
every job was generated once, none was lost, and the only resubmissions are jobs whose fate the
dead process never recorded (their idempotency key made the provider answer with the existing job).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from empire.agent.pools.jobs import NewJob
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue
from fakes.provider import FakeKey, FakeProvider, http_provider_policy

N = 300


def _env(tmp_path: Path, db_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPIRE_")}
    env.update(EMPIRE_DATABASE_URL=f"sqlite:///{db_path}", EMPIRE_DATA_DIR=str(tmp_path / "data"),
               TEST_KEY_A="key-a", TEST_KEY_B="key-b")  # fmt: skip
    return env


def _start(policy: Path, env: dict[str, str], owner: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "empire.cli", "pools", "run", "--policy", str(policy), "--drain", "--lease", "2",
           "--no-publish", "--owner", owner, "--max-in-flight", "64"]  # fmt: skip
    logs = policy.parent / owner  # files, not pipes: nobody reads while the process runs
    with open(f"{logs}.out", "w") as out, open(f"{logs}.err", "w") as err:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=err)


def _output(policy: Path, owner: str) -> tuple[str, str]:
    logs = policy.parent / owner
    return Path(f"{logs}.out").read_text(), Path(f"{logs}.err").read_text()


async def _open(db_path: Path) -> Database:
    return await Database.open(f"sqlite+aiosqlite:///{db_path}")


async def _enqueue(db_path: Path, n: int = N) -> None:
    db = await _open(db_path)
    try:
        jobs = [NewJob(f"crash-{i}", "fake", {"prompt": f"song {i}"}, "luna") for i in range(n)]
        await SqlJobQueue(db).enqueue(jobs, datetime.now(UTC))
    finally:
        await db.close()


async def _states(db_path: Path) -> tuple[dict[str, int], dict[str, str | None]]:
    db = await _open(db_path)
    try:
        q = SqlJobQueue(db)
        counts: dict[str, int] = {}
        for (state, _), n in (await q.counts()).items():
            counts[state] = counts.get(state, 0) + n
        jobs = await q.list(limit=N + 10)
        return counts, {j.idempotency_key: j.provider_job_id for j in jobs}
    finally:
        await db.close()


def _kill_once_accepted(first: subprocess.Popen[bytes], fake: FakeProvider, policy: Path, accepted: int) -> None:
    """SIGKILL the first replica once the provider has accepted `accepted` submissions."""
    deadline = time.monotonic() + 60
    while fake.snapshot()["accepted"] < accepted:
        assert first.poll() is None, _output(policy, "replica-a")
        assert time.monotonic() < deadline, "the first process never got going"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)


@pytest.mark.slow
def test_kill_9_mid_dispatch_then_restart_completes_every_job_exactly_once(tmp_path: Path) -> None:
    fake = FakeProvider(keys={"key-a": FakeKey(rpm=6000, max_concurrent=40), "key-b": FakeKey(rpm=6000, max_concurrent=40)},
                        latency=0.8, latency_jitter=0.4)  # fmt: skip
    db_path = tmp_path / "empire.db"
    with fake.serve():
        accounts = [{"name": n, "env": f"TEST_KEY_{n.upper()}", "requests_per_minute": 6000, "max_concurrent": 40}
                    for n in ("a", "b")]  # fmt: skip
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump({"providers": [http_provider_policy(fake.url, "fake", accounts)]}))
        asyncio.run(_enqueue(db_path))
        env = _env(tmp_path, db_path)

        first = _start(policy, env, "replica-a")
        _kill_once_accepted(first, fake, policy, 60)
        at_kill, _ = asyncio.run(_states(db_path))
        in_flight = at_kill.get("leased", 0) + at_kill.get("submitted", 0)
        assert in_flight > 0, f"nothing was in flight when killed: {at_kill}"
        assert at_kill.get("succeeded", 0) < N

        second = _start(policy, env, "replica-b")
        second.wait(timeout=120)
        out, err = _output(policy, "replica-b")
        assert second.returncode == 0, err
        stats = json.loads(out.strip().splitlines()[-1])
        books = fake.snapshot(with_keys=True)

    final, provider_ids = asyncio.run(_states(db_path))
    assert final == {"succeeded": N}  # nothing lost, nothing left behind
    assert books["accepted"] == N  # each job generated once (idempotency keys)
    assert set(books["keys"]) == set(provider_ids)
    job_ids = {job.key: job.id for job in fake.jobs.values()}
    assert provider_ids == job_ids  # every DB result refers to the provider's one generation of that job
    # resubmissions only for jobs whose submission the dead process never recorded
    assert books["duplicates"] <= at_kill.get("leased", 0)
    assert stats["succeeded"] == N - at_kill.get("succeeded", 0)


def _ignoring_policy(url: str, lookup: bool) -> dict:
    """A provider that ignores idempotency keys; it keeps our key as the job's `reference`."""
    accounts = [{"name": n, "env": f"TEST_KEY_{n.upper()}", "requests_per_minute": 6000, "max_concurrent": 40}
                for n in ("a", "b")]  # fmt: skip
    p = http_provider_policy(url, "fake", accounts)
    p["http"].update(idempotency="ignored", body_template={"prompt": "{prompt}", "reference": "{idempotency_key}"})
    if lookup:
        p["http"].update(lookup_url=f"{url}/v1/jobs?reference={{idempotency_key}}", lookup_job_id_path="data.0.id")
    return p


@pytest.mark.slow
@pytest.mark.parametrize("lookup", [True, False], ids=["lookup", "no-lookup"])
def test_kill_9_between_submission_and_journal_never_resubmits_blindly(tmp_path: Path, lookup: bool) -> None:
    """The provider generates a resubmitted key again. Its answers come 2 s after it accepted a
    job, so the kill lands while accepted submissions are not yet journaled. The next process asks
    the provider for each of them (lookup) or marks them unknown_outcome: never a second generation."""
    n = 150  # more than the 80 the two keys take at once: some are still queued at the kill
    fake = FakeProvider(keys={"key-a": FakeKey(rpm=6000, max_concurrent=40), "key-b": FakeKey(rpm=6000, max_concurrent=40)},
                        latency=0.3, honour_idempotency=False, submit_delay=2.0)  # fmt: skip
    db_path = tmp_path / "empire.db"
    with fake.serve():
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump({"providers": [_ignoring_policy(fake.url, lookup)]}))
        asyncio.run(_enqueue(db_path, n))
        env = _env(tmp_path, db_path)
        first = _start(policy, env, "replica-a")
        _kill_once_accepted(first, fake, policy, 10)
        at_kill, _ = asyncio.run(_states(db_path))
        accepted_at_kill = fake.snapshot()["accepted"]
        assert at_kill.get("submitting", 0) >= accepted_at_kill > 0, at_kill  # accepted, answer not journaled

        fake.submit_delay = 0.0
        second = _start(policy, env, "replica-b")
        second.wait(timeout=120)
        assert second.returncode == 0, _output(policy, "replica-b")[1]
        books = fake.snapshot(with_keys=True)

    final, provider_ids = asyncio.run(_states(db_path))
    assert books["duplicates"] == 0  # nothing was generated twice
    if lookup:
        assert final == {"succeeded": n} and books["accepted"] == n
        assert books["lookups"] >= at_kill["submitting"]
        job_ids = {job.key: job.id for job in fake.jobs.values()}
        assert provider_ids == job_ids  # each result refers to the one generation found by the lookup
    else:
        assert final == {"succeeded": n - at_kill["submitting"], "unknown_outcome": at_kill["submitting"]}
        assert books["accepted"] == n - at_kill["submitting"] + accepted_at_kill
