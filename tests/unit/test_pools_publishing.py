"""Publishing: a compliant track becomes one publish job per platform of its persona, through the
same pools (accounts, limits, retries, budgets), exactly once. On the in-memory twins."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from empire.agent.clock import SystemClock
from empire.agent.pools.build import build_dispatcher
from empire.agent.pools.dispatcher import DispatcherOptions
from empire.agent.pools.jobs import JobState, NewJob
from empire.agent.pools.memory import MemoryContentCatalog, MemoryJobQueue
from empire.agent.pools.publish import ContentPublisher, DirectoryContentSink, object_id, publication_key
from empire.policies.schema import parse_policy

pytestmark = pytest.mark.anyio


def sim(name: str, cost: float = 0.0) -> dict[str, object]:
    return {"name": name, "kind": "simulated", "cost_per_job": cost,
            "accounts": [{"name": "a", "requests_per_minute": 60_000, "max_concurrent": 8}],
            "simulated": {"seed": 3, "latency_mean": "10ms", "latency_sd": "2ms"}}  # fmt: skip


POLICY = parse_policy({
    "providers": [sim("music", 0.5), sim("tiktok"), sim("youtube")],
    "personas": [{"name": "luna", "genres": ["lofi"], "providers": ["music"], "platforms": ["tiktok", "youtube"]}],
    "compliance": {"min_score": 0.0},
})  # fmt: skip


async def test_a_track_goes_out_once_on_each_platform_of_its_persona(tmp_path: Path) -> None:
    queue, catalog = MemoryJobQueue(), MemoryContentCatalog()
    clock = SystemClock()
    platforms = {p.name: p.platforms for p in POLICY.personas}
    publisher = ContentPublisher(catalog, DirectoryContentSink(catalog, tmp_path), lambda: POLICY.compliance, clock,
                                 enqueue=queue.enqueue, platforms=lambda persona: platforms.get(persona, ()))  # fmt: skip
    now = datetime.now(UTC)
    await queue.enqueue([NewJob(f"gen/luna/b/{i}", "music", {"prompt": f"lofi {i}", "persona": "luna",
                                                             "genre": "lofi"}, "luna") for i in range(3)], now)  # fmt: skip
    d = build_dispatcher(POLICY, queue, DispatcherOptions(owner="t", stop_when_empty=True, idle_poll=0.01, seed=1),
                         publisher=publisher, clock=clock)  # fmt: skip
    try:
        with anyio.fail_after(60):
            await d.run()
    finally:
        await d.aclose()
    jobs = {j.idempotency_key: j for j in await queue.list(limit=100)}
    assert {j.state for j in jobs.values()} == {JobState.succeeded} and len(jobs) == 3 + 3 * 2
    oid = object_id("gen/luna/b/0")
    pub = jobs[publication_key(oid, "tiktok")]
    assert pub.provider == "tiktok" and pub.persona == "luna"
    assert pub.result is not None and pub.result["publication"]["platform"] == "tiktok"
    assert pub.result["publication"]["url"].startswith("sim://tiktok/")
    assert jobs["gen/luna/b/0"].result["publications"] == [
        publication_key(oid, "tiktok"),
        publication_key(oid, "youtube"),
    ]
    assert len(catalog.items) == 3  # publishing stores nothing more
    # the spend: only generation costs here (the platforms cost 0), within the pools' budget accounting
    assert (await queue.spend(datetime.now(UTC))).day == pytest.approx(1.5)

    # a crash after the platform jobs were enqueued but before the generation job was recorded as done
    # runs the last step again: the same keys, nothing enqueued twice
    gen = jobs["gen/luna/b/0"]
    again = await publisher.publish(
        gen, d.adapters["music"], "a", await d.adapters["music"].poll("a", gen.provider_job_id)
    )
    assert again["publications"] == gen.result["publications"]
    assert await queue.count_prefix("pub/") == 6
