"""The pure tier planner: which tier, and only when the move pays over the horizon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.tiering.inventory import decay_add
from empire.agent.tiering.planner import (
    GIB,
    ObjectView,
    access_rate,
    decayed_score,
    desired_tier,
    economics,
    plan_object,
)
from empire.agent.types import Reason
from empire.policies.storage import StoragePolicy, Tier, TierRule

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = StoragePolicy()  # hot / warm 30d / cold 90d / archive 180d, S3-like prices


def obj(size: int = 50 * 1024**2, tier: str = "hot", age: float = 400, idle: float | None = None, **kw) -> ObjectView:
    created = NOW - timedelta(days=age)
    last = None if idle is None else NOW - timedelta(days=idle)
    return ObjectView(id="o", size=size, tier=tier, created_at=created, tier_since=kw.pop("tier_since", created),
                      last_access_at=last, access_updated_at=last, access_score=kw.pop("score", 0.0 if last is None else 1.0),
                      **kw)  # fmt: skip


def test_idle_object_goes_to_the_coldest_tier_whose_rules_hold() -> None:
    assert desired_tier(obj(idle=10), POLICY, NOW) == 0
    assert desired_tier(obj(idle=45), POLICY, NOW) == 1
    assert desired_tier(obj(idle=120), POLICY, NOW) == 2
    assert desired_tier(obj(idle=200), POLICY, NOW) == 3
    move = plan_object(obj(idle=200), POLICY, NOW)
    assert move is not None and (move.from_tier, move.to_tier, move.reason) == ("hot", "archive", Reason.idle_demotion)
    assert move.monthly_saving == pytest.approx(50 / 1024 * (0.023 - 0.00099))


def test_never_accessed_objects_are_idle_since_creation() -> None:
    assert desired_tier(obj(age=40), POLICY, NOW) == 1
    assert desired_tier(obj(age=5), POLICY, NOW) == 0


def test_high_earners_stay_out_of_archive() -> None:
    assert desired_tier(obj(idle=300, revenue=50.0), POLICY, NOW) == 2  # cold, not archive (max_revenue 1.0)


def test_busy_objects_stay_hot_even_when_idle_rule_holds() -> None:
    # accessed 40 days ago but with a large decayed count: still over warm's max_access_rate
    busy = obj(idle=40, score=5000.0)
    assert access_rate(busy.access_score, busy.access_updated_at, NOW, POLICY.access_half_life) > 0.1
    assert desired_tier(busy, POLICY, NOW) == 0


def test_small_objects_are_never_moved() -> None:
    assert plan_object(obj(size=POLICY.min_object_size - 1, idle=300), POLICY, NOW) is None


def test_move_not_planned_when_its_cost_exceeds_the_saving() -> None:
    # Tiny saving (256 KiB) against a large per-object transition charge.
    pricey = StoragePolicy(tiers=(
        Tier(name="hot", cost_per_gb_month=0.023),
        Tier(name="cold", cost_per_gb_month=0.004, transition_cost_per_object=0.01, enter_when=TierRule(idle_days=30)),
    ))  # fmt: skip
    assert plan_object(obj(size=256 * 1024, idle=60), pricey, NOW) is None
    assert plan_object(obj(size=5 * GIB, idle=60), pricey, NOW) is not None


def test_early_deletion_charge_blocks_leaving_a_tier_too_soon() -> None:
    # warm -> cold over a 60-day horizon saves 0.017/GB; leaving warm 1 day after entering costs the
    # retrieval (0.01/GB) plus 29 unserved minimum days (0.0121/GB): not worth it yet.
    policy = POLICY.model_copy(update={"horizon": timedelta(days=60)})
    fresh = obj(size=GIB, tier="warm", age=400, tier_since=NOW - timedelta(days=1))
    econ = economics(fresh, policy.tier("warm"), policy.tier("cold"), policy, NOW)
    assert econ.early_deletion == pytest.approx(29 * 0.0125 / 30)
    assert econ.move_cost == pytest.approx(0.01 + 0.00002 + econ.early_deletion)
    assert plan_object(fresh, policy.model_copy(update={"tiers": policy.tiers[:3]}), NOW) is None
    served = obj(size=GIB, tier="warm", age=400, tier_since=NOW - timedelta(days=40))
    move = plan_object(served, policy.model_copy(update={"tiers": policy.tiers[:3]}), NOW)
    assert move is not None and (move.from_tier, move.to_tier) == ("warm", "cold")


def test_a_busy_archived_object_is_promoted_because_retrievals_cost_more() -> None:
    busy = obj(size=GIB, tier="cold", idle=0.1, score=50.0, tier_since=NOW - timedelta(days=10))
    move = plan_object(busy, POLICY, NOW)
    assert move is not None and (move.to_tier, move.reason) == ("hot", Reason.access_promotion)
    assert move.move_cost == pytest.approx(0.03 + 80 * 0.004 / 30)


def test_promotion_only_on_access_since_entering_the_tier_and_when_enabled() -> None:
    since = NOW - timedelta(days=200)
    accessed = obj(size=GIB, tier="archive", idle=0.5, score=20.0, tier_since=since)
    assert plan_object(accessed, POLICY, NOW) is not None
    assert plan_object(accessed, POLICY.model_copy(update={"promote_on_access": False}), NOW) is None
    # Its rules no longer hold only because revenue rose; nobody listened: it stays.
    earner = obj(size=GIB, tier="archive", idle=300, revenue=100.0, tier_since=since)
    assert desired_tier(earner, POLICY, NOW) == 2
    assert plan_object(earner, POLICY, NOW) is None


def test_objects_being_moved_or_quarantined_are_left_alone() -> None:
    assert plan_object(obj(idle=300, status="moving"), POLICY, NOW) is None
    assert plan_object(obj(idle=300, status="quarantined"), POLICY, NOW) is None


def test_decayed_access_count_halves_every_half_life() -> None:
    h = timedelta(days=7)
    t0 = NOW - timedelta(days=14)
    score, stamp = decay_add(0.0, None, t0, 8, h)
    assert (score, stamp) == (8.0, t0)
    score, stamp = decay_add(score, stamp, NOW, 1, h)
    assert score == pytest.approx(8 / 4 + 1) and stamp == NOW
    late, stamp2 = decay_add(score, stamp, NOW - timedelta(days=7), 2, h)  # a late event does not move the stamp
    assert late == pytest.approx(3 + 1) and stamp2 == NOW


def test_a_stamp_ahead_of_the_clock_decays_as_if_it_were_now() -> None:
    """A row written before the ingestion checks (an access dated 2999) made `content show` and
    the planner die in math.exp; it now counts as a fresh access."""
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert decayed_score(3.0, datetime(2999, 1, 1, tzinfo=UTC), now, timedelta(days=7)) == 3.0
