"""The planner's `returns` strategy: one UTC day's generation budget, spent where it pays. PURE.

`plan_by_returns` is `plan_generation`'s counterpart (same inputs from the state DB, the same
`GenerationPlan` out, so the planner switches on `spending.strategy` and nothing else changes):

- the day's *spend target* is what the active personas' cadences would cost in a day (the same
  money as the `cadence` strategy, spread differently), minus what was already planned today;
- each persona may get up to `cadence per day x max_factor x trend boost` tracks a day;
- the floor (`spending.floor`: tracks per period) comes first, then `allocate`'s Thompson draws
  on the revenue the catalog reports (`TrackReturn`s, read by the caller);
- budgets: the same ledger as `plan_generation` (spend so far + queued, then every planned track).

Planning every tick is idempotent as with `cadence`: the day's window is `gen/<persona>/<day>/`,
what it already holds is subtracted from the persona's cap and the spend target, and the draws
are seeded by the day, so a second tick with the same data draws the same numbers and asks for
nothing more. In practice the first tick of a UTC day plans the day.

One `Generate` action per persona: its `genres` are laid out so that the executor's rotation
(`genres[n % len(genres)]` for the job numbered `n`) gives every track the genre it was allocated
to, its reasons are `data_floor` and/or `expected_return` (and `trend_boost`), and its
`allocation` carries, per genre, the count, expected return per dollar, uncertainty and draw.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence, Set
from datetime import datetime, timedelta
from typing import Any

from empire.agent.pools.allocating import (
    ArmStats,
    Demand,
    Learning,
    TrackReturn,
    allocate,
    arm_stats,
    estimates,
)
from empire.agent.pools.budget import BudgetLedger, BudgetLimits
from empire.agent.pools.jobs import JobPriority, Spend
from empire.agent.pools.planner import GenerationPlan, HeldBack, batch_id, window_start
from empire.agent.types import Generate, Reason
from empire.policies.generation import Persona, SpendPolicy

__all__ = ["DAY", "learning_from", "losing", "persona_returns", "plan_by_returns", "tracks_per_day"]

DAY = timedelta(days=1)


def learning_from(policy: SpendPolicy) -> Learning:
    return Learning(
        memory_half_life=policy.memory_half_life / DAY, payout_half_life=policy.payout_half_life / DAY,
        prior_tracks=policy.prior_tracks, genre_prior_tracks=policy.genre_prior_tracks, cv=policy.cv,
        rank=policy.draw, skip_hopeless_floor=policy.floor.skip_hopeless,
        floor_per_day=policy.floor.tracks / (policy.floor.every / DAY),
    )  # fmt: skip


def tracks_per_day(p: Persona) -> float:
    return p.cadence.tracks * (DAY / p.cadence.every)


def _layout(first: int, genres: Sequence[str]) -> tuple[str, ...]:
    """Genres such that `out[(first + i) % len(out)] == genres[i]` (the executor's rotation)."""
    out = [""] * len(genres)
    for i, g in enumerate(genres):
        out[(first + i) % len(genres)] = g
    return tuple(out)


def plan_by_returns(
    personas: tuple[Persona, ...],
    now: datetime,
    planned: Mapping[str, int],
    limits: BudgetLimits,
    spend: Spend,
    returns: Sequence[TrackReturn],
    recent: Mapping[str, int],
    policy: SpendPolicy,
    queued_cost: Mapping[str, float] | None = None,
    trend: Mapping[str, float] | None = None,
    paused: Set[str] = frozenset(),
) -> tuple[GenerationPlan, dict[str, Any]]:
    """`planned[persona]`: jobs already in today's window (`gen/<persona>/<day>/`); `recent[persona]`:
    its generation jobs in the floor period (`spending.floor.every` back from now), today's included.
    Returns the plan and a summary for `/status`."""
    queued_cost = queued_cost or {}
    trend = trend or {}
    learning = learning_from(policy)
    start = window_start(now, DAY)
    batch = batch_id(start)
    ledger = BudgetLedger(limits, spend)
    for provider, cost in queued_cost.items():  # queued work comes first
        ledger.reserve(provider, min(cost, max(0.0, ledger.remaining(provider))))

    held: list[HeldBack] = []
    demands: list[Demand] = []
    target = 0.0
    for p in personas:
        cost = limits.estimate(p.providers[0])
        per_day = tracks_per_day(p)
        done = planned.get(p.name, 0)
        if p.paused or p.name in paused:
            if math.ceil(per_day - 1e-9) > done:
                held.append(HeldBack(p.name, Reason.persona_paused, math.ceil(per_day - 1e-9) - done))
            continue
        target += per_day * cost - done * cost
        boost = min(max(1.0, trend.get(p.name, 1.0)), p.trend_boost_max)
        cap = math.ceil(per_day * policy.max_factor * boost - 1e-9) - done
        floor = max(0, policy.floor.tracks - recent.get(p.name, 0))
        if cap > 0:
            demands.append(Demand(p.name, p.genres, p.providers[0], cost, cap, min(floor, cap), boost,
                                  int(JobPriority[p.priority.value])))  # fmt: skip

    seed = int.from_bytes(hashlib.blake2b(batch.encode(), digest_size=8).digest(), "big")
    stats = arm_stats(returns, learning)
    plan = allocate(demands, stats, ledger, random.Random(seed), learning, spend_limit=max(0.0, target))
    held += [HeldBack(h.persona, Reason.budget_exhausted, h.count) for h in plan.held]

    by_name = {p.name: p for p in personas}
    actions: list[Generate] = []
    allocated = 0.0
    for d in demands:
        mine = [a for a in plan.allocations if a.persona == d.persona]
        if not mine:
            continue
        mine.sort(key=lambda a: (a.reason != "floor", a.genre))
        p = by_name[d.persona]
        first = planned.get(d.persona, 0)
        genres = [a.genre for a in mine for _ in range(a.count)]
        reasons = [Reason.data_floor] if any(a.reason == "floor" for a in mine) else []
        if any(a.reason == "expected_return" for a in mine):
            reasons.append(Reason.expected_return)
        if d.boost > 1.0:
            reasons.append(Reason.trend_boost)
        detail = tuple(
            {"genre": a.genre, "count": a.count, "reason": a.reason, "expected": round(a.expected, 4),
             "uncertainty": round(a.uncertainty, 4), "draw": round(a.draw, 4), "boost": round(a.boost, 4)}
            for a in mine
        )  # fmt: skip
        allocated += len(genres) * d.cost
        actions.append(Generate(persona=d.persona, count=len(genres), priority=p.priority.value,
                                reasons=tuple(reasons), providers=p.providers, genres=_layout(first, genres),
                                batch=batch, first=first, allocation=detail))  # fmt: skip
    projected = spend.day + sum(queued_cost.values()) + allocated
    summary: dict[str, Any] = {"spend_target_today": round(max(0.0, target), 6), "allocated": round(allocated, 6),
                               "losing": losing(demands, stats, learning),
                               "returns": persona_returns(demands, stats, learning)}  # fmt: skip
    return GenerationPlan(tuple(actions), tuple(held), projected), summary


def persona_returns(
    demands: Sequence[Demand], stats: Mapping[tuple[str, str], ArmStats], learning: Learning
) -> dict[str, tuple[float, float]]:
    """Per persona: (expected revenue per dollar, its standard deviation), as the allocator sees it."""
    out: dict[str, tuple[float, float]] = {}
    for (persona, _genre), (_e, mean_p, k_p) in estimates(demands, stats, learning).items():
        out.setdefault(persona, (mean_p, mean_p / math.sqrt(k_p)))
    return out


def losing(
    demands: Sequence[Demand], stats: Mapping[tuple[str, str], ArmStats], learning: Learning, min_tracks: float = 5.0
) -> list[dict[str, float | str]]:
    """Personas that keep losing money, with the evidence: on at least `min_tracks` matured tracks,
    even the optimistic end of the estimate (expected + 2 standard deviations) returns less than
    the dollar spent. The allocator already starves them down to their floor; this says so."""
    out: list[dict[str, float | str]] = []
    seen: set[str] = set()
    for (persona, _genre), (_e, mean_p, k_p) in estimates(demands, stats, learning).items():
        if persona in seen:
            continue
        seen.add(persona)
        tracks = k_p * learning.cv**2 - learning.prior_tracks
        sd = mean_p / math.sqrt(k_p)
        if tracks >= min_tracks and mean_p + 2 * sd < 1.0:
            out.append({"persona": persona, "return_per_dollar": round(mean_p, 4), "uncertainty": round(sd, 4),
                        "tracks": round(tracks, 2)})  # fmt: skip
    return sorted(out, key=lambda x: float(x["return_per_dollar"]))
