"""Two replicas sharing account limits through Redis stay under every limit, together.

Two `empire pools run` processes work one queue; each account allows 20 requests/s and 4 jobs at
once. Alone, each process would happily use the whole limit; through Redis they split it. The
provider counts any request over a limit it published (`over_limit`) and the peak of jobs running
per key: both must stay within the limits while both processes do work.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from empire.agent.pools.jobs import NewJob
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue
from fakes.provider import FakeKey, FakeProvider, http_provider_policy

N = 160
RPM, BURST, MAX = 1200, 4, 4
START_IN = 6.0


async def _enqueue(db_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
    try:
        # due in a few seconds: both processes are up and polling by then, and start together
        due = datetime.now(UTC) + timedelta(seconds=START_IN)
        jobs = [NewJob(f"rep-{i}", "fake", {"prompt": f"song {i}"}, None, not_before=due) for i in range(N)]
        await SqlJobQueue(db).enqueue(jobs, datetime.now(UTC))
    finally:
        await db.close()


@pytest.mark.slow
def test_two_replicas_through_redis_stay_under_the_limits(tmp_path: Path, redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    fake = FakeProvider(keys={k: FakeKey(rpm=RPM, burst=BURST, max_concurrent=MAX) for k in ("key-a", "key-b")},
                        latency=0.15)  # fmt: skip
    db_path = tmp_path / "empire.db"
    with fake.serve():
        accounts = [{"name": n, "env": f"TEST_KEY_{n.upper()}", "requests_per_minute": RPM, "burst": BURST,
                     "max_concurrent": MAX} for n in ("a", "b")]  # fmt: skip
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump({"providers": [http_provider_policy(fake.url, "fake", accounts, "50ms")]}))
        asyncio.run(_enqueue(db_path))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMPIRE_")}
        env.update(EMPIRE_DATABASE_URL=f"sqlite:///{db_path}", EMPIRE_DATA_DIR=str(tmp_path / "data"),
                   EMPIRE_REDIS_URL=redis_url, TEST_KEY_A="key-a", TEST_KEY_B="key-b")  # fmt: skip
        # each process carries at most the accounts' combined concurrency (2 x 4), so neither can lease the
        # whole queue in its first claims before the other one's first poll (that made "both worked" a race)
        cmd = [sys.executable, "-m", "empire.cli", "pools", "run", "--policy", str(policy), "--drain", "--no-publish",
               "--max-in-flight", str(2 * MAX)]  # fmt: skip
        # files, not pipes: an unread pipe would block one process mid-transaction and hang both
        logs = [(tmp_path / f"out-{i}.txt", tmp_path / f"err-{i}.txt") for i in range(2)]
        procs = []
        for i, (out_path, err_path) in enumerate(logs):
            with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
                procs.append(subprocess.Popen([*cmd, "--owner", f"replica-{i}"], env=env, stdout=out_f, stderr=err_f))
        for p in procs:
            p.wait(timeout=120)
        books = fake.snapshot(with_keys=True)
    for p, (_, err_path) in zip(procs, logs, strict=True):
        assert p.returncode == 0, err_path.read_text()
    done = [json.loads(out.read_text().strip().splitlines()[-1])["succeeded"] for out, _ in logs]
    assert sum(done) == N and min(done) > 0  # both replicas worked
    assert books["accepted"] == N and books["duplicates"] == 0 and set(books["keys"]) == {f"rep-{i}" for i in range(N)}
    assert books["over_limit"] == 0
    assert max(books["peak_concurrency"].values()) <= MAX
