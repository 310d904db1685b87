"""The generation planner: cadence, trend boost, budget guard. PURE (now is an argument)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from empire.agent.pools.budget import BudgetLedger, BudgetLimits
from empire.agent.pools.jobs import Spend
from empire.agent.pools.planner import batch_id, key_prefix, plan_generation, window_start
from empire.agent.types import Reason
from empire.policies.generation import Budget, Persona, Provider
from empire.policies.schema import Policy

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def policy(daily: float | None = None, **persona_kw: dict) -> Policy:
    return Policy.model_validate({
        "budget": {"daily": daily},
        "providers": [
            {"name": "music", "cost_per_job": 1.0, "accounts": [{"name": "a"}, {"name": "b", "cost_per_job": 2.0}]},
            {"name": "voice", "cost_per_job": 0.5, "accounts": [{"name": "v"}]},
        ],
        "personas": [
            {"name": "hi", "genres": ["synthwave"], "providers": ["music"], "priority": "high",
             "cadence": {"tracks": 4, "every": "1d"}, **persona_kw.get("hi", {})},
            {"name": "mid", "genres": ["lofi"], "providers": ["music"], "priority": "normal",
             "cadence": {"tracks": 2, "every": "1d"}, **persona_kw.get("mid", {})},
            {"name": "lo", "genres": ["ambient"], "providers": ["voice"], "priority": "low",
             "cadence": {"tracks": 6, "every": "6h"}, "trend_boost_max": 1.5, **persona_kw.get("lo", {})},
        ],
    })  # fmt: skip


def limits(p: Policy) -> BudgetLimits:
    return BudgetLimits.from_policy(p.providers, p.budget)


def counts(plan: object) -> dict[str, int]:
    return {a.persona: a.count for a in plan.actions}  # type: ignore[attr-defined]


def test_windows_are_epoch_aligned() -> None:
    assert window_start(NOW, timedelta(days=1)) == datetime(2026, 3, 14, tzinfo=UTC)
    assert window_start(NOW, timedelta(hours=6)) == datetime(2026, 3, 14, 12, tzinfo=UTC)
    assert batch_id(datetime(2026, 3, 14, 12, tzinfo=UTC)) == "20260314T120000Z"
    assert key_prefix("lo", "20260314T120000Z") == "gen/lo/20260314T120000Z/"


def test_cadence_plans_the_window_once() -> None:
    p = policy()
    plan = plan_generation(p.personas, NOW, {}, limits(p), Spend())
    assert counts(plan) == {"hi": 4, "mid": 2, "lo": 6}
    hi = next(a for a in plan.actions if a.persona == "hi")
    assert (hi.batch, hi.first, hi.reasons, hi.priority) == ("20260314T000000Z", 0, (Reason.release_cadence,), "high")
    # three already made today: only the fourth is planned, continuing the numbering
    plan = plan_generation(p.personas, NOW, {"hi": 3, "mid": 2, "lo": 6}, limits(p), Spend())
    assert counts(plan) == {"hi": 1}
    assert plan.actions[0].first == 3


def test_trend_boost_is_capped() -> None:
    p = policy()
    plan = plan_generation(p.personas, NOW, {}, limits(p), Spend(), trend={"hi": 1.6, "lo": 9.0, "mid": 0.2})
    assert counts(plan) == {"hi": 7, "mid": 2, "lo": 9}  # ceil(4*1.6), mid never below cadence, lo capped at 1.5x
    hi = next(a for a in plan.actions if a.persona == "hi")
    assert hi.reasons == (Reason.release_cadence, Reason.trend_boost)


def test_paused_persona_is_held() -> None:
    p = policy(mid={"paused": True})
    plan = plan_generation(p.personas, NOW, {}, limits(p), Spend())
    assert "mid" not in counts(plan)
    assert [(h.persona, h.reason, h.count) for h in plan.held] == [("mid", Reason.persona_paused, 2)]


def test_a_hold_pauses_like_the_policy() -> None:
    p = policy()
    plan = plan_generation(p.personas, NOW, {"mid": 1}, limits(p), Spend(), paused={"mid", "lo"})
    assert counts(plan) == {"hi": 4}
    assert {(h.persona, h.reason, h.count) for h in plan.held} == {
        ("mid", Reason.persona_paused, 1),
        ("lo", Reason.persona_paused, 6),
    }


def test_budget_guard_defers_low_priority_and_never_plans_past_the_budget() -> None:
    # music jobs reserve 2.0 (its dearest account), voice 0.5; daily budget 13, 2 already spent
    p = policy(daily=13.0)
    plan = plan_generation(p.personas, NOW, {}, limits(p), Spend(day=2.0, month=2.0))
    assert counts(plan) == {"hi": 4, "mid": 1}  # 8 + 2 = 10 of the 11 left; lo (3.0 more) deferred
    held = {(h.persona, h.reason): h.count for h in plan.held}
    assert held == {("lo", Reason.budget_deferred): 6, ("mid", Reason.budget_exhausted): 1}


def test_queued_work_counts_against_the_budget() -> None:
    p = policy(daily=10.0)
    plan = plan_generation(p.personas, NOW, {}, limits(p), Spend(), queued_cost={"music": 6.0})
    assert counts(plan) == {"hi": 2}
    held = {(h.persona, h.reason): h.count for h in plan.held}
    assert held[("hi", Reason.budget_exhausted)] == 2 and held[("mid", Reason.budget_exhausted)] == 2


def test_exhausted_budget_plans_nothing() -> None:
    p = policy(daily=5.0)
    plan = plan_generation(p.personas, NOW, {}, limits(p), Spend(day=5.0, month=5.0))
    assert plan.actions == ()
    assert {h.reason for h in plan.held} == {Reason.budget_exhausted, Reason.budget_deferred}


def test_ledger_checks_provider_and_global_budgets() -> None:
    lim = BudgetLimits(
        total=Budget(daily=10.0, monthly=100.0), providers={"music": Budget(daily=4.0)},
        cost_estimate={"music": 1.0, "voice": 1.0},
    )  # fmt: skip
    ledger = BudgetLedger(lim, Spend(day=3.0, month=99.0, by_provider_day={"music": 3.0}))
    assert ledger.reserve("music", 1.0)
    assert not ledger.reserve("music", 1.0)  # provider daily budget reached
    assert not ledger.reserve("voice", 1.0)  # monthly global budget reached
    assert lim.active


def test_planning_uses_only_policy_types() -> None:
    assert isinstance(policy().personas[0], Persona) and isinstance(policy().providers[0], Provider)


def test_trend_factor() -> None:
    from empire.agent.pools.planner import trend_factor

    assert trend_factor(150.0, 100.0) == 1.5
    assert trend_factor(50.0, 100.0) == 1.0  # a falling trend never cuts the cadence
    assert trend_factor(None, 100.0) == trend_factor(10.0, 0.0) == trend_factor(float("nan"), 1.0) == 1.0
