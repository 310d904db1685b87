"""The planner's `returns` strategy: the cadences' money, spent where revenue per dollar is highest. PURE."""

from __future__ import annotations

from datetime import UTC, datetime

from empire.agent.pools.allocating import TrackReturn
from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.executor import build_jobs
from empire.agent.pools.jobs import Spend
from empire.agent.pools.spending import plan_by_returns
from empire.agent.types import Reason
from empire.policies.schema import Policy

NOW = datetime(2026, 3, 14, 0, 0, 30, tzinfo=UTC)


def policy(daily: float | None = None, **spending: object) -> Policy:
    return Policy.model_validate({
        "budget": {"daily": daily},
        "providers": [{"name": "music", "cost_per_job": 1.0, "accounts": [{"name": "a"}]}],
        "personas": [
            {"name": "gold", "genres": ["lofi"], "providers": ["music"], "cadence": {"tracks": 2, "every": "1d"}},
            {"name": "lead", "genres": ["jazz", "trap"], "providers": ["music"], "cadence": {"tracks": 2, "every": "1d"}},
            {"name": "new", "genres": ["house"], "providers": ["music"], "cadence": {"tracks": 1, "every": "12h"},
             "priority": "low"},
        ],
        "spending": {"strategy": "returns", **spending,
                     "floor": {"skip_hopeless": False, **spending.get("floor", {})}},  # type: ignore[dict-item]
    })  # fmt: skip


def history() -> list[TrackReturn]:
    gold = [TrackReturn("gold", "lofi", 1.0, 40.0, 6.0) for _ in range(30)]
    lead = [TrackReturn("lead", "jazz", 1.0, 40.0, 0.2) for _ in range(30)]
    return gold + lead


def plan(p: Policy, planned: dict[str, int] | None = None, spend: Spend | None = None, **kw: object):  # type: ignore[no-untyped-def]
    limits = BudgetLimits.from_policy(p.providers, p.budget)
    returns = kw.pop("returns", None) or history()
    return plan_by_returns(p.personas, NOW, planned or {}, limits, spend or Spend(), returns,  # type: ignore[arg-type]
                           kw.pop("recent", {"gold": 3}), p.spending, **kw)  # type: ignore[arg-type]  # fmt: skip


def counts(result: object) -> dict[str, int]:
    return {a.persona: a.count for a in result[0].actions}  # type: ignore[index]


def test_the_cadences_money_goes_to_the_earner_after_every_floor() -> None:
    result, summary = plan(policy())
    assert summary["spend_target_today"] == 6.0  # 2 + 2 + 2 (1 per 12 h): what the cadences cost
    assert counts((result,)) == {"gold": 4, "lead": 1, "new": 1}
    by = {a.persona: a for a in result.actions}
    assert by["gold"].reasons == (Reason.expected_return,)
    assert by["lead"].reasons == (Reason.data_floor,)
    assert by["lead"].genres == ("trap",)  # its floor track in the genre it knows least
    (alloc,) = by["gold"].allocation
    assert alloc["reason"] == "expected_return" and alloc["count"] == 4
    assert 5.0 < alloc["expected"] < 7.0 and alloc["uncertainty"] > 0
    assert by["gold"].batch == "20260314T000000Z" and by["gold"].first == 0
    assert result.projected_spend == 6.0
    # lead keeps losing money: reported with the evidence (the allocator already holds it to its floor)
    (loser,) = summary["losing"]
    assert loser["persona"] == "lead" and loser["return_per_dollar"] < 0.5 and loser["tracks"] > 5


def test_replanning_the_same_day_asks_for_nothing_more() -> None:
    first, _ = plan(policy())
    planned = {a.persona: a.count for a in first.actions}
    again, summary = plan(policy(), planned=planned, recent=planned, spend=Spend(day=6.0, month=6.0))
    assert again.actions == () and summary["spend_target_today"] == 0.0


def test_a_persona_recently_fed_owes_no_floor() -> None:
    result, _ = plan(policy(), recent={"gold": 1, "lead": 1, "new": 1})
    assert counts((result,)) == {"gold": 6}  # cadence 2 x max_factor 3
    unfed, _ = plan(policy(), recent={})
    assert counts((unfed,)) == {"gold": 4, "lead": 1, "new": 1}
    assert next(a for a in unfed.actions if a.persona == "gold").reasons == (Reason.data_floor, Reason.expected_return)


def test_the_budget_caps_the_day_and_floors_go_by_priority() -> None:
    result, _ = plan(policy(daily=2.0))
    assert sum(a.count for a in result.actions) == 2
    assert counts((result,)) == {"lead": 1, "new": 1} or counts((result,)) == {"lead": 1, "gold": 1}
    # the low-priority newcomer's floor is the one held when only one track fits
    tight, _ = plan(policy(daily=1.0))
    assert counts((tight,)) == {"lead": 1}
    assert [(h.persona, h.reason, h.count) for h in tight.held] == [("new", Reason.budget_exhausted, 1)]


def test_a_paused_persona_is_held_and_its_money_not_spent_elsewhere() -> None:
    result, summary = plan(policy(), paused={"gold"})
    assert "gold" not in counts((result,))
    assert ("gold", Reason.persona_paused, 2) in [(h.persona, h.reason, h.count) for h in result.held]
    assert summary["spend_target_today"] == 4.0


def test_every_job_gets_the_genre_it_was_allocated() -> None:
    p = policy(floor={"tracks": 2})
    jazz = [TrackReturn("lead", "jazz", 1.0, 40.0, 9.0) for _ in range(30)]  # lead pays in jazz, trap is unknown
    jazz += [TrackReturn("gold", "lofi", 1.0, 40.0, 0.5) for _ in range(30)]  # gold pays little
    result, _ = plan(p, planned={"lead": 1}, returns=jazz, recent={"gold": 5, "lead": 1, "new": 5})  # next: number 1
    (lead,) = [a for a in result.actions if a.persona == "lead"]
    assert [(a["genre"], a["reason"]) for a in lead.allocation] == [("trap", "floor"), ("jazz", "expected_return")]
    jobs = build_jobs(lead, p)
    assert [j.request["genre"] for j in jobs] == [a["genre"] for a in lead.allocation for _ in range(a["count"])]
    assert jobs[0].idempotency_key == "gen/lead/20260314T000000Z/1"


def test_a_budget_cut_mid_day_lowers_what_is_left_and_is_never_passed() -> None:
    first, _ = plan(policy(daily=6.0))
    assert sum(a.count for a in first.actions) == 6
    # an hour later the operator cuts the day's budget to 4 after 3 of the 6 were spent; the rest of
    # the day's plan is re-made from the queue's counts (3 planned, 3 still queued)
    planned = {"gold": 3}
    cut, summary = plan(policy(daily=4.0), planned=planned, recent=planned, spend=Spend(day=3.0, month=3.0))
    assert summary["spend_target_today"] == 3.0 and sum(a.count for a in cut.actions) == 1
    assert cut.projected_spend <= 4.0
    assert plan(policy(daily=2.0), planned=planned, recent=planned, spend=Spend(day=3.0, month=3.0))[0].actions == ()


def test_a_hopeless_persona_s_floor_waits_until_its_uncertainty_has_grown() -> None:
    """skip_hopeless (the default): lead's optimistic return (expected + 2 sd on 30 tracks) is far
    below gold's, which the day's money buys: its floor track goes to gold instead. Once its
    evidence has faded (old tracks weigh little), it could matter again and is fed."""
    result, _ = plan(policy(floor={"skip_hopeless": True}))
    assert counts((result,)) == {"gold": 5, "new": 1}  # new has no data: it could be anything
    faded = [TrackReturn("gold", "lofi", 1.0, 40.0, 6.0) for _ in range(30)]
    faded += [TrackReturn("lead", "jazz", 1.0, 400.0, 0.2) for _ in range(30)]  # a year ago: it says little now
    result, _ = plan(policy(floor={"skip_hopeless": True}), returns=faded)
    assert "lead" in counts((result,))
