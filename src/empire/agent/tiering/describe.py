"""One content object as a person wants to see it: where it is, how it is used, what the rules
want for it and, when it stays put, why. `empire content show` and `GET /v1/content/{id}` both
print this, so they cannot disagree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from empire.agent.tiering.inventory import ContentObject
from empire.agent.tiering.planner import access_rate, desired_tier, economics, plan_object
from empire.policies.storage import StoragePolicy

__all__ = ["describe_object"]


def describe_object(obj: ContentObject, pol: StoragePolicy, now: datetime) -> dict[str, Any]:
    view = obj.view()
    want = pol.tiers[desired_tier(view, pol, now)].name
    move = plan_object(view, pol, now)
    out: dict[str, Any] = {
        "id": obj.id, "tier": obj.tier, "status": obj.status, "size": obj.size, "checksum": obj.checksum,
        "location": obj.location, "persona": obj.persona, "title": obj.title,
        "created_at": obj.created_at.isoformat(), "tier_since": obj.tier_since.isoformat(),
        "last_access_at": obj.last_access_at.isoformat() if obj.last_access_at else None,
        "accesses_per_day": round(access_rate(obj.access_score, obj.access_updated_at, now, pol.access_half_life), 4),
        "revenue": obj.revenue, "rules_want": want,
    }  # fmt: skip
    if move is not None:
        out["planned_move"] = {"to": move.to_tier, "reason": move.reason.value,
                               "monthly_saving": round(move.monthly_saving, 6),
                               "move_cost": round(move.move_cost, 6)}  # fmt: skip
    elif want != obj.tier and obj.tier in [t.name for t in pol.tiers]:
        out["held_because"] = _held_because(obj, pol, want, now)
    return out


def _held_because(obj: ContentObject, pol: StoragePolicy, want: str, now: datetime) -> str:
    names = [t.name for t in pol.tiers]
    accessed = obj.last_access_at is not None and obj.last_access_at > obj.tier_since
    if obj.status != "active":
        return f"the object is {obj.status}"
    if obj.size < pol.min_object_size:
        return f"smaller than min_object_size ({pol.min_object_size} bytes)"
    if names.index(want) < names.index(obj.tier) and not (pol.promote_on_access and accessed):
        return "promotion needs promote_on_access and an access since it entered its tier"
    e = economics(obj.view(), pol.tier(obj.tier), pol.tier(want), pol, now)
    return f"saving over the horizon ({e.horizon_saving:.6f}) does not exceed the move cost ({e.move_cost:.6f})"
