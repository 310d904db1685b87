"""The dispatcher without a database: every job through a simulated provider on the queue's in-memory
twin, exactly once (tests/integration/test_pools_dispatch.py runs the same path on SQLite/PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from empire.agent.pools.build import build_dispatcher
from empire.agent.pools.dispatcher import DispatcherOptions
from empire.agent.pools.jobs import JobState, NewJob
from empire.agent.pools.memory import MemoryJobQueue
from empire.policies.schema import parse_policy

pytestmark = pytest.mark.anyio


async def test_every_job_succeeds_once_on_the_memory_queue() -> None:
    policy = parse_policy({"providers": [{
        "name": "sim", "kind": "simulated", "cost_per_job": 0.5, "budget": {"daily": 100},
        "accounts": [{"name": "s1", "requests_per_minute": 60_000, "max_concurrent": 8},
                     {"name": "s2", "requests_per_minute": 60_000, "max_concurrent": 8}],
        "simulated": {"seed": 3, "latency_mean": "20ms", "latency_sd": "5ms"},
    }]})  # fmt: skip
    queue = MemoryJobQueue()
    now = datetime.now(UTC)
    await queue.enqueue([NewJob(f"k{i}", "sim", {"prompt": f"song {i}"}, "luna") for i in range(40)], now)
    d = build_dispatcher(policy, queue, DispatcherOptions(owner="t", stop_when_empty=True, idle_poll=0.01, seed=1))
    try:
        with anyio.fail_after(60):
            await d.run()
    finally:
        await d.aclose()
    jobs = await queue.list(limit=100)
    assert {j.state for j in jobs} == {JobState.succeeded} and len(jobs) == 40
    assert {j.account for j in jobs} == {"s1", "s2"} and all(j.lease_owner is None for j in jobs)
    assert (await queue.spend(datetime.now(UTC))).day == pytest.approx(20.0)  # 40 x 0.5, within the daily 100
