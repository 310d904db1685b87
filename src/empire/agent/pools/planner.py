"""The generation planner: personas' release cadence (boosted by trends) -> `Generate` actions,
under a budget guard. PURE: the caller reads the counts and spend; `now` is an argument.

Cadence: a persona releases `cadence.tracks` per `cadence.every`, in windows aligned on the Unix
epoch (a daily cadence plans per UTC day). A trend boost (a factor from metrics, e.g. streams this
week over last week) raises the window's target, capped by the persona's `trend_boost_max`. What
was already planned in the window (jobs with the window's key prefix) is subtracted, so planning
every tick is idempotent: the same window never asks twice.

A persona is paused by its policy (`paused: true`) or by a hold (`paused`: an alert's
`pause_persona` remediation or `empire pools hold persona`, kept in the state DB); either way
what its cadence asks for is held back with `persona_paused`.

Budget guard, in priority order (high, normal, low): spend so far (succeeded + reserved in flight)
plus the estimated cost of what is queued, plus what this plan adds, must fit every daily and
monthly budget. When the projection passes a budget, low-priority personas are deferred entirely
(`budget_deferred`); higher priorities get what still fits and the rest is held back
(`budget_exhausted`). The dispatcher enforces the hard limit again at claim time; this is where
the plan gives way, so that high-priority releases are the ones that get the money.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from empire.agent.pools.budget import BudgetLedger, BudgetLimits
from empire.agent.pools.jobs import JobPriority, Spend
from empire.agent.types import Generate, Reason
from empire.policies.generation import Persona

__all__ = [
    "GenerationPlan",
    "HeldBack",
    "batch_id",
    "job_key",
    "key_prefix",
    "plan_generation",
    "trend_factor",
    "window_start",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_start(now: datetime, every: timedelta) -> datetime:
    span = every.total_seconds()
    n = math.floor((now - EPOCH).total_seconds() / span)
    return EPOCH + timedelta(seconds=n * span)


def batch_id(start: datetime) -> str:
    return start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def key_prefix(persona: str, batch: str) -> str:
    return f"gen/{persona}/{batch}/"


def job_key(persona: str, batch: str, n: int) -> str:
    return f"{key_prefix(persona, batch)}{n}"


def trend_factor(current: float | None, baseline: float | None) -> float:
    """A persona's trend boost from a metric (e.g. streams this week over last week): the growth
    ratio, never below 1 (a falling trend does not cut the release cadence), 1 without data.
    The persona's `trend_boost_max` caps it in `plan_generation`."""
    if current is None or baseline is None or baseline <= 0 or current != current or baseline != baseline:
        return 1.0
    return max(1.0, current / baseline)


@dataclass(frozen=True)
class HeldBack:
    persona: str
    reason: Reason  # persona_paused | budget_deferred | budget_exhausted
    count: int


@dataclass(frozen=True)
class GenerationPlan:
    actions: tuple[Generate, ...]
    held: tuple[HeldBack, ...]
    projected_spend: float  # spend + queued + everything the cadence asked for


def _target(p: Persona, boost: float) -> tuple[int, bool]:
    factor = min(max(1.0, boost), p.trend_boost_max)
    target = math.ceil(p.cadence.tracks * factor - 1e-9)
    return target, target > p.cadence.tracks


def plan_generation(
    personas: tuple[Persona, ...],
    now: datetime,
    planned: Mapping[str, int],
    limits: BudgetLimits,
    spend: Spend,
    queued_cost: Mapping[str, float] | None = None,
    trend: Mapping[str, float] | None = None,
    paused: Set[str] = frozenset(),
) -> GenerationPlan:
    """`planned[persona]`: jobs already created in the persona's current window (see `key_prefix`);
    `paused`: personas held by a remediation or the operator, on top of the policy's `paused`."""
    queued_cost = queued_cost or {}
    trend = trend or {}

    def seeded() -> tuple[BudgetLedger, bool]:  # queued work comes first
        ledger, over = BudgetLedger(limits, spend), False
        for provider, cost in queued_cost.items():
            if not ledger.reserve(provider, cost):
                over = True
                ledger.reserve(provider, max(0.0, ledger.remaining(provider)))
        return ledger, over

    ledger, over = seeded()

    wants: list[tuple[Persona, int, int, bool, str]] = []  # persona, first, need, boosted, batch
    held: list[HeldBack] = []
    for p in personas:
        start = window_start(now, p.cadence.every)
        target, boosted = _target(p, trend.get(p.name, 1.0))
        done = planned.get(p.name, 0)
        need = max(0, target - done)
        if need == 0:
            continue
        if p.paused or p.name in paused:
            held.append(HeldBack(p.name, Reason.persona_paused, need))
            continue
        wants.append((p, done, need, boosted, batch_id(start)))

    def order(w: tuple[Persona, int, int, bool, str]) -> tuple[int, str]:
        return (int(JobPriority[w[0].priority.value]), w[0].name)

    wants.sort(key=order)
    trial, _ = seeded()
    projected = spend.day + sum(queued_cost.values())
    for p, _first, need, _b, _batch in wants:
        cost = limits.estimate(p.providers[0])
        projected += need * cost
        if not trial.reserve(p.providers[0], need * cost):
            over = True

    actions: list[Generate] = []
    for p, first, need, boosted, batch in wants:
        provider = p.providers[0]
        cost = limits.estimate(provider)
        if over and p.priority.value == "low":
            held.append(HeldBack(p.name, Reason.budget_deferred, need))
            continue
        room = ledger.remaining(provider)
        fits = need if cost <= 0 or room == math.inf else max(0, min(need, math.floor((room + 1e-9) / cost)))
        if fits < need:
            held.append(HeldBack(p.name, Reason.budget_exhausted, need - fits))
        if fits == 0:
            continue
        ledger.reserve(provider, fits * cost)
        reasons = (Reason.release_cadence, Reason.trend_boost) if boosted else (Reason.release_cadence,)
        actions.append(
            Generate(
                persona=p.name, count=fits, priority=p.priority.value, reasons=reasons, providers=p.providers,
                genres=p.genres, batch=batch, first=first,
            )
        )  # fmt: skip
    return GenerationPlan(tuple(actions), tuple(held), projected)
