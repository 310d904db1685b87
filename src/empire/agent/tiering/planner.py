"""The tier planner: which tier an object belongs in, and whether moving it there pays. PURE.

Why a move must pay for itself: every move costs real money (reading out of a cold tier is billed
per GB, entering a tier is billed per request, and leaving a tier before its minimum days is billed
as if the object had stayed). So the planner compares, over the policy's `horizon`, what the move
saves (storage price difference, plus retrieval charges avoided at the object's current access
rate) against what it costs (one retrieval out of the source tier, the destination's transition
charge, and the early-deletion charge for the source tier's remaining minimum days), and plans the
move only when the saving is larger. Small objects are never moved (`min_object_size`): their
per-request charges dominate.

The same arithmetic runs in SQL for the whole inventory (`empire.state.tier_selection`); this
module is its reference, used to explain a single object and to cross-check the SQL in tests.

Access rate: `access_score` is a count that halves every `access_half_life`. For a steady rate of
r accesses/day the score settles at r * h / ln 2, so the rate estimate is score * ln 2 / h.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from empire.agent.types import Reason, Retier
from empire.policies.storage import StoragePolicy, Tier, TierRule

__all__ = [
    "GIB",
    "Economics",
    "MoveSummary",
    "ObjectView",
    "PlannedMove",
    "access_rate",
    "decayed_score",
    "desired_tier",
    "economics",
    "plan_object",
    "rule_holds",
]

GIB = 1024**3  # storage is priced per GB-month; providers mean GiB
DAY = 86400.0


@dataclass(frozen=True)
class ObjectView:
    """The inventory facts the planner reads about one object."""

    id: str
    size: int
    tier: str
    created_at: datetime
    tier_since: datetime
    last_access_at: datetime | None = None
    access_score: float = 0.0
    access_updated_at: datetime | None = None
    revenue: float = 0.0
    status: str = "active"


@dataclass(frozen=True)
class Economics:
    monthly_saving: float  # storage + avoided retrievals, per 30 days (negative: the move costs more to keep)
    horizon_saving: float  # monthly_saving over the policy horizon
    move_cost: float  # retrieval out of the source + transition into the target + early deletion
    early_deletion: float  # part of move_cost: the source tier's unserved minimum days

    @property
    def pays(self) -> bool:
        return self.horizon_saving > self.move_cost


@dataclass(frozen=True)
class PlannedMove:
    object_id: str
    size: int
    from_tier: str
    to_tier: str
    reason: Reason
    monthly_saving: float
    horizon_saving: float
    move_cost: float

    def to_action(self) -> Retier:
        return Retier(
            object_id=self.object_id, from_tier=self.from_tier, to_tier=self.to_tier, size=self.size,
            reasons=(self.reason,), monthly_saving=round(self.monthly_saving, 9),
        )  # fmt: skip


def _days(later: datetime, earlier: datetime | None) -> float:
    if earlier is None:
        return math.inf
    return (later - earlier).total_seconds() / DAY


def decayed_score(score: float, updated_at: datetime | None, now: datetime, half_life: timedelta) -> float:
    """The access count as of `now`: it halves every `half_life` (no future accesses assumed)."""
    if updated_at is None or score <= 0:
        return 0.0
    elapsed = max(0.0, (now - updated_at).total_seconds())  # a stamp ahead of the clock (skew) is "now"
    return score * math.exp(-math.log(2) * elapsed / half_life.total_seconds())


def access_rate(score: float, updated_at: datetime | None, now: datetime, half_life: timedelta) -> float:
    """Estimated accesses per day from the decayed count."""
    return decayed_score(score, updated_at, now, half_life) * math.log(2) / (half_life.total_seconds() / DAY)


def rule_holds(rule: TierRule, obj: ObjectView, now: datetime, half_life: timedelta) -> bool:
    """All of the rule's given conditions hold (an omitted condition always holds)."""
    if rule.idle_days is not None and _days(now, obj.last_access_at or obj.created_at) < rule.idle_days:
        return False
    if rule.min_age_days is not None and _days(now, obj.created_at) < rule.min_age_days:
        return False
    if rule.max_access_rate is not None and (
        access_rate(obj.access_score, obj.access_updated_at, now, half_life) > rule.max_access_rate
    ):
        return False
    return not (rule.max_revenue is not None and obj.revenue > rule.max_revenue)


def desired_tier(obj: ObjectView, policy: StoragePolicy, now: datetime) -> int:
    """Index of the coldest tier whose rules hold; 0 (the hottest) when none does."""
    for i in range(len(policy.tiers) - 1, 0, -1):
        rule = policy.tiers[i].enter_when
        if rule is not None and rule_holds(rule, obj, now, policy.access_half_life):
            return i
    return 0


def economics(obj: ObjectView, src: Tier, dst: Tier, policy: StoragePolicy, now: datetime) -> Economics:
    gb = obj.size / GIB
    rate = access_rate(obj.access_score, obj.access_updated_at, now, policy.access_half_life)
    monthly = gb * (src.cost_per_gb_month - dst.cost_per_gb_month) + rate * 30 * gb * (
        src.retrieval_cost_per_gb - dst.retrieval_cost_per_gb
    )
    tier_days = _days(now, obj.tier_since)
    early = max(0.0, src.min_days - tier_days) * gb * src.cost_per_gb_month / 30
    cost = gb * src.retrieval_cost_per_gb + dst.transition_cost_per_object + early
    months = policy.horizon.total_seconds() / DAY / 30
    return Economics(monthly_saving=monthly, horizon_saving=monthly * months, move_cost=cost, early_deletion=early)


def plan_object(obj: ObjectView, policy: StoragePolicy, now: datetime) -> PlannedMove | None:
    """The move this object should make now, or None to leave it where it is."""
    if obj.status != "active" or obj.size < policy.min_object_size:
        return None
    names = [t.name for t in policy.tiers]
    if obj.tier not in names:
        return None  # a tier the policy no longer knows: leave it for the operator
    current = names.index(obj.tier)
    want = desired_tier(obj, policy, now)
    if want == current:
        return None
    if want < current:  # hotter: only on access since it entered its tier
        accessed = obj.last_access_at is not None and obj.last_access_at > obj.tier_since
        if not (policy.promote_on_access and accessed):
            return None
        reason = Reason.access_promotion
    else:
        reason = Reason.idle_demotion
    src, dst = policy.tiers[current], policy.tiers[want]
    econ = economics(obj, src, dst, policy, now)
    if not econ.pays:
        return None
    return PlannedMove(
        object_id=obj.id, size=obj.size, from_tier=src.name, to_tier=dst.name, reason=reason,
        monthly_saving=econ.monthly_saving, horizon_saving=econ.horizon_saving, move_cost=econ.move_cost,
    )  # fmt: skip


@dataclass(frozen=True)
class MoveSummary:
    """Planned moves grouped by direction."""

    from_tier: str
    to_tier: str
    objects: int
    bytes: int
    monthly_saving: float
