"""The budget guard: never spend past a daily or monthly budget. PURE.

Spend counts succeeded jobs' actual cost plus the *reserved* cost of every job in flight (a job is
charged its provider's highest per-job cost when it is claimed, and its real cost when it
succeeds; a job that fails releases its reservation). Claiming checks and reserves in the same
transaction as the lease, serialised across replicas, so concurrent dispatchers cannot together
overshoot: at any instant, spent + reserved <= budget.

Limits are per provider (`providers[].budget`) and global (`budget`), each per UTC day and month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from empire.agent.pools.jobs import Spend
from empire.policies.generation import Budget, Provider

__all__ = ["BudgetLedger", "BudgetLimits", "day_start", "job_cost_estimate", "month_start"]


def day_start(now: datetime) -> datetime:
    n = now.astimezone(UTC)
    return datetime(n.year, n.month, n.day, tzinfo=UTC)


def month_start(now: datetime) -> datetime:
    n = now.astimezone(UTC)
    return datetime(n.year, n.month, 1, tzinfo=UTC)


def account_cost(provider: Provider, account_name: str) -> float:
    for a in provider.accounts:
        if a.name == account_name:
            return a.cost_per_job if a.cost_per_job is not None else provider.cost_per_job
    return provider.cost_per_job


def job_cost_estimate(provider: Provider) -> float:
    """The most one job can cost on this provider: what a claim reserves."""
    return (
        max(account_cost(provider, a.name) for a in provider.accounts if a.enabled)
        if any(a.enabled for a in provider.accounts)
        else provider.cost_per_job
    )


@dataclass(frozen=True)
class BudgetLimits:
    total: Budget = field(default_factory=Budget)
    providers: dict[str, Budget] = field(default_factory=dict)
    cost_estimate: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_policy(cls, providers: tuple[Provider, ...], total: Budget) -> BudgetLimits:
        return cls(
            total=total,
            providers={p.name: p.budget for p in providers},
            cost_estimate={p.name: job_cost_estimate(p) for p in providers},
        )

    @property
    def active(self) -> bool:
        budgets = [self.total, *self.providers.values()]
        return any(b.daily is not None or b.monthly is not None for b in budgets)

    def estimate(self, provider: str) -> float:
        return self.cost_estimate.get(provider, 0.0)

    def remaining(self, spend: Spend, provider: str) -> float:
        """How much more may be committed on `provider` now (inf when nothing limits it)."""
        room = math.inf
        b = self.providers.get(provider)
        if b is not None:
            if b.daily is not None:
                room = min(room, b.daily - spend.provider_day(provider))
            if b.monthly is not None:
                room = min(room, b.monthly - spend.provider_month(provider))
        if self.total.daily is not None:
            room = min(room, self.total.daily - spend.day)
        if self.total.monthly is not None:
            room = min(room, self.total.monthly - spend.month)
        return room


@dataclass
class BudgetLedger:
    """Running spend during one claim (or one planning pass): check, then reserve."""

    limits: BudgetLimits
    spend: Spend

    def __post_init__(self) -> None:
        self._day = self.spend.day
        self._month = self.spend.month
        self._pday = dict(self.spend.by_provider_day)
        self._pmonth = dict(self.spend.by_provider_month)

    def _current(self) -> Spend:
        return Spend(self._day, self._month, self._pday, self._pmonth)

    def remaining(self, provider: str) -> float:
        return self.limits.remaining(self._current(), provider)

    def fits(self, provider: str, cost: float) -> bool:
        return cost <= self.remaining(provider) + 1e-9

    def reserve(self, provider: str, cost: float) -> bool:
        if not self.fits(provider, cost):
            return False
        self._day += cost
        self._month += cost
        self._pday[provider] = self._pday.get(provider, 0.0) + cost
        self._pmonth[provider] = self._pmonth.get(provider, 0.0) + cost
        return True
