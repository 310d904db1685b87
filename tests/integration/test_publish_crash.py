"""Exactly-once publishing: kill -9 between a platform's acceptance and the journal, restart, and
every track is published once per platform.

Two platforms (two real loopback fakes that record accepted submissions by idempotency key) get
one publish job per track, keyed `pub/<object_id>/<platform>` as the publisher makes them. A real
`empire pools run` process is SIGKILLed once the platforms have accepted some publications the
state DB has not recorded (the job is leased or submitted there: the platform said yes, the
journal does not know yet); a second process takes over after the leases expire. The platforms'
own books decide: one publication per track and platform, none lost, and every job's recorded
external id is the platform's one publication of it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
import yaml
from test_pools_crash import _env, _open, _output, _start

from empire.agent.pools.jobs import JobPriority
from empire.agent.pools.publish import publication_jobs
from empire.state.jobs import SqlJobQueue
from fakes.provider import FakeKey, FakeProvider, http_provider_policy

TRACKS = 40
PLATFORMS = ("youtube", "tiktok")


async def _enqueue(db_path: Path) -> None:
    from datetime import UTC, datetime

    db = await _open(db_path)
    try:
        jobs = [j for i in range(TRACKS)
                for j in publication_jobs(f"trk-{i:03d}", "luna", f"song {i}", PLATFORMS, JobPriority.normal)]  # fmt: skip
        await SqlJobQueue(db).enqueue(jobs, datetime.now(UTC))
    finally:
        await db.close()


async def _jobs(db_path: Path) -> dict[str, tuple[str, str | None]]:
    db = await _open(db_path)
    try:
        return {j.idempotency_key: (j.state.value, j.provider_job_id)
                for j in await SqlJobQueue(db).list(limit=10 * TRACKS)}  # fmt: skip
    finally:
        await db.close()


@pytest.mark.slow
def test_kill_9_between_acceptance_and_journal_publishes_once_per_platform(tmp_path: Path) -> None:
    fakes = {p: FakeProvider(keys={"key-a": FakeKey(rpm=6000, max_concurrent=20)}, latency=0.8, latency_jitter=0.4)
             for p in PLATFORMS}  # fmt: skip
    db_path = tmp_path / "empire.db"
    with fakes["youtube"].serve(), fakes["tiktok"].serve():
        accounts = [{"name": "a", "env": "TEST_KEY_A", "requests_per_minute": 6000, "max_concurrent": 20}]
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump({"providers": [http_provider_policy(f.url, p, accounts)
                                                        for p, f in fakes.items()]}))  # fmt: skip
        asyncio.run(_enqueue(db_path))
        env = _env(tmp_path, db_path)

        first = _start(policy, env, "replica-a")
        deadline = time.monotonic() + 60
        while sum(f.snapshot()["accepted"] for f in fakes.values()) < TRACKS // 2:
            assert first.poll() is None, _output(policy, "replica-a")
            assert time.monotonic() < deadline, "the first process never got going"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = asyncio.run(_jobs(db_path))
        accepted = {k for p, f in fakes.items() for k in f.snapshot(with_keys=True)["keys"]}
        unjournaled = [k for k in accepted if at_kill[k][0] != "succeeded"]
        assert unjournaled, "the kill did not fall between a platform's acceptance and the journal"

        second = _start(policy, env, "replica-b")
        second.wait(timeout=120)
        out, err = _output(policy, "replica-b")
        assert second.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["succeeded"] > 0
        books = {p: f.snapshot(with_keys=True) for p, f in fakes.items()}
        published = {p: {job.key: job.id for job in f.jobs.values()} for p, f in fakes.items()}

    final = asyncio.run(_jobs(db_path))
    assert {state for state, _ in final.values()} == {"succeeded"} and len(final) == TRACKS * len(PLATFORMS)
    for p in PLATFORMS:
        keys = {f"pub/trk-{i:03d}/{p}" for i in range(TRACKS)}
        assert books[p]["accepted"] == TRACKS  # one publication per track on this platform
        assert set(published[p]) == keys  # none lost, none foreign
        # the journal's external id of each is the platform's one publication of it
        assert {k: final[k][1] for k in keys} == published[p]
