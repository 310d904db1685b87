"""Trend boosts: a persona's trend metric, read from a Prometheus over HTTP, raises its cadence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.observers.prometheus import PrometheusObserver
from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.jobs import Spend
from empire.agent.pools.planner import plan_generation
from empire.agent.pools.trends import TrendReader
from empire.agent.types import Reason
from empire.policies.schema import parse_policy
from fakes.prometheus import FakePrometheus

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)

POLICY = parse_policy({
    "providers": [{"name": "sim", "accounts": [{"name": "a"}]}],
    "personas": [
        {"name": "luna", "genres": ["synthwave"], "providers": ["sim"], "cadence": {"tracks": 4, "every": "1d"},
         "trend": {"query": "streams_now", "baseline": "streams_last_week", "every": "15m"}, "trend_boost_max": 1.5},
        {"name": "grit", "genres": ["lofi"], "providers": ["sim"], "cadence": {"tracks": 2, "every": "1d"},
         "trend": {"query": "grit_now", "baseline": "grit_last_week"}},
        {"name": "plain", "genres": ["ambient"], "providers": ["sim"]},
    ],
})  # fmt: skip


def plan(factors: dict[str, float]):
    limits = BudgetLimits.from_policy(POLICY.providers, POLICY.budget)
    return plan_generation(POLICY.personas, T0, planned={}, limits=limits, spend=Spend(), trend=factors)


async def test_trend_read_over_http_boosts_the_cadence_within_its_cap() -> None:
    prom = FakePrometheus()
    prom.series.update({"streams_now": 3000.0, "streams_last_week": 1000.0, "grit_now": 80.0, "grit_last_week": 100.0})
    seen: list[dict[str, float]] = []
    with prom.serve() as url:
        observer = PrometheusObserver(url)
        try:
            reader = TrendReader(observer, lambda: POLICY, seen.append)
            factors = await reader(T0)
        finally:
            await observer.aclose()
    assert factors == {"luna": 3.0, "grit": 1.0}  # a falling trend never cuts the cadence
    assert seen == [factors]
    counts = {a.persona: (a.count, a.reasons) for a in plan(factors).actions}
    assert counts["luna"] == (6, (Reason.release_cadence, Reason.trend_boost))  # 4 x min(3.0, cap 1.5)
    assert counts["grit"] == (2, (Reason.release_cadence,))
    assert counts["plain"] == (1, (Reason.release_cadence,))


async def test_trend_is_reread_every_interval_and_failures_mean_no_boost() -> None:
    calls: list[str] = []
    values = {"streams_now": 2000.0, "streams_last_week": 1000.0}

    class Observer:
        async def query(self, promql: str, at: datetime) -> tuple[datetime, float]:
            calls.append(promql)
            if promql not in values:
                raise LookupError("no series")
            return at, values[promql]

    reader = TrendReader(Observer(), lambda: POLICY)
    assert (await reader(T0))["luna"] == 2.0
    assert reader.factors()["grit"] == 1.0 and "no series" in reader.status()["errors"]["grit"]
    n = len(calls)
    values["streams_now"] = 1200.0
    assert (await reader(T0 + timedelta(minutes=5)))["luna"] == 2.0 and len(calls) == n  # not due yet
    assert (await reader(T0 + timedelta(minutes=15)))["luna"] == pytest.approx(1.2)


async def test_no_metric_source_means_no_boost() -> None:
    from empire.agent.observers.none import NoSource

    reader = TrendReader(NoSource(), lambda: POLICY)
    assert await reader(T0) == {"luna": 1.0, "grit": 1.0}
    assert reader.status()["errors"]["luna"] == "no metric source: no trend boost"
