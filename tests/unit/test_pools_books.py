"""The business books as metrics: per platform and persona x platform within the policy's label
sets (a pair the policy does not publish to mints no series), trend capture per group."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
from prometheus_client import CollectorRegistry

from empire.agent.pools.books import BusinessMetricsJob
from empire.agent.pools.metrics import PoolMetrics
from empire.policies.schema import Policy

NOW = datetime(2026, 6, 10, tzinfo=UTC)


def policy(platforms: list[str]) -> Policy:
    return Policy.model_validate({
        "providers": [{"name": n, "accounts": [{"name": "a"}]} for n in ("music", "youtube", "tiktok")],
        "personas": [{"name": "gold", "genres": ["lofi"], "providers": ["music"], "platforms": platforms}],
    })  # fmt: skip


def test_platform_revenue_roi_and_trend_capture_within_the_policy_s_label_sets() -> None:
    registry = CollectorRegistry()
    metrics = PoolMetrics(registry)
    books = {("gold", "youtube"): {"revenue": 4.0, "spend": 2.0}, ("gold", "tiktok"): {"revenue": 1.0, "spend": 1.0},
             ("ghost", "myspace"): {"revenue": 9.0, "spend": 1.0}}  # fmt: skip
    capture = {"boosted": {"per_track": 3.5}, "rest": {"per_track": 1.5}}
    pol = [policy(["youtube", "tiktok"])]
    seen: list[datetime] = []

    async def read(since: datetime) -> dict:  # type: ignore[type-arg]
        seen.append(since)
        return books

    async def cap(since: datetime) -> dict:  # type: ignore[type-arg]
        return capture

    job = BusinessMetricsJob(lambda: pol[0], read, cap, metrics)
    anyio.run(job, NOW)
    value = registry.get_sample_value
    assert seen == [NOW - pol[0].spending.lookback]
    assert value("empire_platform_revenue", {"platform": "youtube"}) == 4.0
    assert value("empire_platform_return_per_dollar", {"platform": "youtube"}) == 2.0
    assert value("empire_persona_platform_revenue", {"persona": "gold", "platform": "tiktok"}) == 1.0
    assert value("empire_platform_revenue", {"platform": "myspace"}) is None  # not in the policy: no series
    assert value("empire_trend_capture_revenue_per_track", {"group": "boosted"}) == 3.5
    pol[0] = policy(["youtube"])  # the policy stops publishing to tiktok: its series go
    anyio.run(job, NOW)
    assert value("empire_platform_revenue", {"platform": "tiktok"}) is None
    assert value("empire_platform_revenue", {"platform": "youtube"}) == 4.0
