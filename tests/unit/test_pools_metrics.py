"""The pools' budget and hold gauges: closed label sets, a limit series only when the policy sets one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from empire.agent.monitor import Monitor
from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.jobs import Spend
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.types import Reason
from empire.policies.schema import parse_policy

POLICY = parse_policy({
    "budget": {"daily": 50, "monthly": None},
    "providers": [{"name": "music", "cost_per_job": 1.0, "budget": {"monthly": 300}, "accounts": [{"name": "a"}]},
                  {"name": "voice", "accounts": [{"name": "v"}]}],
    "personas": [{"name": "luna", "genres": ["x"], "providers": ["music"]}],
})  # fmt: skip


def metrics() -> tuple[CollectorRegistry, object]:
    registry = CollectorRegistry()
    m = Monitor(registry).group(PoolMetrics)
    m.configure(POLICY.providers, [p.name for p in POLICY.personas])
    return registry, m


def test_budget_gauges_per_provider_and_global() -> None:
    registry, m = metrics()
    spend = Spend(12.0, 40.0, {"music": 10.0, "voice": 2.0}, {"music": 35.0, "voice": 5.0})
    m.on_budget(BudgetLimits.from_policy(POLICY.providers, POLICY.budget), spend)  # type: ignore[attr-defined]
    val = registry.get_sample_value
    assert val("empire_pool_budget_spend", {"provider": "music", "period": "day"}) == 10.0
    assert val("empire_pool_budget_spend", {"provider": "voice", "period": "month"}) == 5.0
    assert val("empire_pool_budget_limit", {"provider": "music", "period": "month"}) == 300
    assert val("empire_pool_budget_limit", {"provider": "music", "period": "day"}) is None
    assert val("empire_pool_budget_limit", {"provider": "voice", "period": "day"}) is None
    assert val("empire_budget_spend", {"period": "day"}) == 12.0 and val("empire_budget_limit", {"period": "day"}) == 50
    assert val("empire_budget_limit", {"period": "month"}) is None
    # a reload that drops the monthly budget removes its series (the alert must not compare to a stale limit)
    looser = parse_policy({**POLICY.model_dump(mode="json"), "providers": [
        {"name": "music", "cost_per_job": 1.0, "accounts": [{"name": "a"}]}]})  # fmt: skip
    m.configure(looser.providers)  # type: ignore[attr-defined]
    m.on_budget(BudgetLimits.from_policy(looser.providers, looser.budget), spend)  # type: ignore[attr-defined]
    assert val("empire_pool_budget_limit", {"provider": "music", "period": "month"}) is None
    assert val("empire_pool_budget_spend", {"provider": "voice", "period": "day"}) is None  # no such provider now


def test_held_and_hold_gauges_use_closed_label_sets() -> None:
    registry, m = metrics()
    val = registry.get_sample_value
    assert val("empire_generation_held", {"persona": "luna", "reason": "persona_paused"}) == 0
    m.on_held([("luna", Reason.budget_deferred, 3), ("not-in-policy", Reason.persona_paused, 2)])  # type: ignore[attr-defined]
    assert val("empire_generation_held", {"persona": "luna", "reason": "budget_deferred"}) == 3
    assert val("empire_generation_held", {"persona": "other", "reason": "persona_paused"}) == 2
    m.on_held([])  # type: ignore[attr-defined]
    assert val("empire_generation_held", {"persona": "luna", "reason": "budget_deferred"}) == 0
    m.on_holds({"luna"}, {"music/a", "ghost/x"})  # type: ignore[attr-defined]
    assert val("empire_persona_paused", {"persona": "luna"}) == 1
    assert val("empire_pool_account_drained", {"provider": "music", "account": "a"}) == 1
    assert val("empire_pool_account_drained", {"provider": "voice", "account": "v"}) == 0
    assert val("empire_pool_account_drained", {"provider": "ghost", "account": "x"}) is None


def test_key_rejected_gauge_per_policy_account() -> None:
    registry, m = metrics()
    val = registry.get_sample_value

    def rejected(provider: str, account: str) -> float | None:
        return val("empire_pool_account_key_rejected", {"provider": provider, "account": account})

    assert rejected("music", "a") == 0 and rejected("voice", "v") == 0  # every account's series, from the start
    m.on_key_rejected([("music", "a"), ("ghost", "x")])  # type: ignore[attr-defined]
    assert rejected("music", "a") == 1 and rejected("voice", "v") == 0
    assert rejected("ghost", "x") is None and rejected("other", "other") is None  # no label the policy lacks
    # a reload keeps a surviving account's value (resetting it would restart the alert's `for:`) ...
    m.configure(POLICY.providers)  # type: ignore[attr-defined]
    assert rejected("music", "a") == 1
    # ... and drops the series of an account the policy removed: it must not alert forever
    without_a = parse_policy({**POLICY.model_dump(mode="json"), "providers": [
        {"name": "music", "accounts": [{"name": "b"}]}, {"name": "voice", "accounts": [{"name": "v"}]}]})  # fmt: skip
    m.configure(without_a.providers)  # type: ignore[attr-defined]
    assert rejected("music", "a") is None and rejected("music", "b") == 0
    m.on_key_rejected([])  # type: ignore[attr-defined]
    assert rejected("voice", "v") == 0
