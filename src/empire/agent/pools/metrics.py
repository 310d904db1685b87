"""The pools' metric group (`monitor.group(PoolMetrics)`): per provider/account traffic, health, spend, queue.

Closed label sets only: provider and account names come from the policy (`configure`); a name the
policy does not know is reported as "other" rather than minting a new series. `error_class`,
`cause`, `state` and `priority` are fixed enums. No API key, prompt or job id is ever a label.
The queue depth is `empire_jobs_queued{priority}`: the example policy scales the generator
workers on `sum(empire_jobs_queued)`.

Budgets: `empire_pool_budget_spend{provider,period}` / `empire_pool_budget_limit{provider,period}`
and the global `empire_budget_spend{period}` / `empire_budget_limit{period}` (period: day | month;
spend counts succeeded jobs plus what jobs in flight have reserved, as the budget guard does). A
limit series exists only while the policy sets that limit, so `spend / limit > 0.9` (the
PrometheusRule's `EmpireBudgetNearLimit`) only ever compares against a real budget.

Dead keys: `empire_pool_account_key_rejected{provider,account}` is 1 while the breaker marks the
account's key rejected (a 401/403, and no answer since showed the key working; `health`). It is
apart from `empire_pool_account_cooling` because a rejected key does not pass by itself: an
operator must rotate it (`EmpireProviderKeyRejected`), while a 429/5xx cooldown needs nobody.
An account the policy drops loses its series (it must not alert forever); one it disables reads 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.errors import ErrorClass
from empire.agent.pools.health import CooldownCause
from empire.agent.pools.jobs import JobPriority, JobState, Spend
from empire.agent.types import Reason
from empire.policies.generation import Budget, Provider

__all__ = ["PoolMetrics"]

OTHER = "other"
PERIODS = ("day", "month")
HELD_REASONS = (Reason.persona_paused, Reason.budget_deferred, Reason.budget_exhausted)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class PoolMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        acct = ["provider", "account"]
        self.in_flight = Gauge("empire_pool_in_flight", "Jobs this replica has on an account", acct, registry=registry)
        self.submitted = Counter("empire_pool_submitted", "Jobs the provider accepted", acct, registry=registry)
        self.succeeded = Counter("empire_pool_succeeded", "Jobs finished successfully", acct, registry=registry)
        self.failed = Counter(
            "empire_pool_failed", "Failed provider calls by error class", [*acct, "error_class"], registry=registry
        )
        self.cooldowns = Counter(
            "empire_pool_cooldowns", "Times an account's breaker opened, by cause", [*acct, "cause"], registry=registry
        )
        self.cooling = Gauge("empire_pool_account_cooling", "1 while the account cools down", acct, registry=registry)
        self.key_rejected = Gauge(
            "empire_pool_account_key_rejected", "1 while the provider rejects the account's key (401/403) and "
            "no answer since showed it working", acct, registry=registry,
        )  # fmt: skip
        self.spend = Counter("empire_pool_spend", "Money spent on succeeded jobs (currency units)", acct,
                             registry=registry)  # fmt: skip
        self.latency = Histogram(
            "empire_pool_job_latency_seconds", "Submit to result, per provider", ["provider"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.dead = Counter("empire_jobs_dead", "Jobs dead-lettered, by provider", ["provider"], registry=registry)
        self.queued = Gauge("empire_jobs_queued", "Jobs waiting in the queue, by priority", ["priority"],
                            registry=registry)  # fmt: skip
        self.jobs = Gauge("empire_jobs", "Jobs in the state DB by state", ["state"], registry=registry)
        self.quarantined = Counter("empire_content_quarantined", "Results the compliance gate held back",
                                   ["persona"], registry=registry)  # fmt: skip
        self.published = Counter("empire_content_published", "Results published as content objects",
                                 ["persona"], registry=registry)  # fmt: skip
        self.budget_spend = Gauge("empire_pool_budget_spend", "Spend plus reservations this UTC day/month, per "
                                  "provider (currency units)", ["provider", "period"], registry=registry)  # fmt: skip
        self.budget_limit = Gauge("empire_pool_budget_limit", "The provider's budget for the period (only when set)",
                                  ["provider", "period"], registry=registry)  # fmt: skip
        self.total_spend = Gauge("empire_budget_spend", "Spend plus reservations this UTC day/month, all providers",
                                 ["period"], registry=registry)  # fmt: skip
        self.total_limit = Gauge("empire_budget_limit", "The global budget for the period (only when set)",
                                 ["period"], registry=registry)  # fmt: skip
        self.held = Gauge("empire_generation_held", "Tracks the planner held back in the current window, by reason",
                          ["persona", "reason"], registry=registry)  # fmt: skip
        self.drained = Gauge("empire_pool_account_drained", "1 while the account is drained (no new jobs)", acct,
                             registry=registry)  # fmt: skip
        self.paused = Gauge("empire_persona_paused", "1 while the persona is paused by a hold or the policy",
                            ["persona"], registry=registry)  # fmt: skip
        self.trend = Gauge("empire_persona_trend_factor", "The cadence boost the persona's trend metric gives "
                           "(1 = none; before the trend_boost_max cap)", ["persona"], registry=registry)  # fmt: skip
        # spending by returns (issue 20): what the planner learned per persona, bounded by the policy's personas
        self.revenue = Gauge("empire_persona_revenue", "Revenue to date of the persona's tracks within "
                             "spending.lookback (spending strategy returns)", ["persona"], registry=registry)  # fmt: skip
        self.return_per_dollar = Gauge("empire_persona_return_per_dollar", "Expected revenue per dollar of generation "
                                       "(decayed, matured), as the spending allocator estimates it", ["persona"],
                                       registry=registry)  # fmt: skip
        self.return_sd = Gauge("empire_persona_return_uncertainty", "Standard deviation of that estimate",
                               ["persona"], registry=registry)  # fmt: skip
        self.losing = Gauge("empire_persona_losing", "1 while the persona's optimistic return per dollar "
                            "(expected + 2 sd, on 5+ matured tracks) is below 1", ["persona"], registry=registry)  # fmt: skip
        self.allocated = Gauge("empire_generation_allocated", "Tracks the spending allocator planned in its last "
                               "plan, by reason (floor | expected_return)", ["persona", "reason"], registry=registry)  # fmt: skip
        self.platform_revenue = Gauge("empire_platform_revenue", "Revenue to date, on the platform, of the tracks "
                                      "created within spending.lookback (performance figures)", ["platform"],
                                      registry=registry)  # fmt: skip
        self.platform_roi = Gauge("empire_platform_return_per_dollar", "That revenue over what the tracks cost: "
                                  "publishing there plus an even share of their generation", ["platform"],
                                  registry=registry)  # fmt: skip
        self.pair_revenue = Gauge("empire_persona_platform_revenue", "Revenue to date of the persona's tracks on the "
                                  "platform (pairs the policy publishes to)", ["persona", "platform"], registry=registry)  # fmt: skip
        self.trend_capture = Gauge("empire_trend_capture_revenue_per_track", "Revenue per track of the tracks planned "
                                   "on a trend boost (group boosted) and of the rest (group rest), within "
                                   "spending.lookback", ["group"], registry=registry)  # fmt: skip
        self._accounts: set[tuple[str, str]] = set()
        self._pairs: set[tuple[str, str]] = set()
        self._providers: set[str] = set()
        self._personas: set[str] = set()

    def configure(self, providers: Iterable[Provider], personas: Iterable[str] | None = None) -> None:
        """Set the closed label sets from the policy and create every series at zero."""
        before, self._accounts = self._accounts, {(p.name, a.name) for p in providers for a in p.accounts}
        for p, a in before - self._accounts:  # dropped by the policy: no stale "rejected" to alert on
            with contextlib.suppress(KeyError):
                self.key_rejected.remove(p, a)
        self._providers = {p for p, _ in self._accounts}
        for gauge in (self.budget_spend, self.budget_limit, self.drained):  # names the policy dropped
            gauge.clear()
        if personas is not None:
            self._personas = set(personas)
            for gauge in (self.held, self.paused, self.trend, self.revenue, self.return_per_dollar, self.return_sd,
                          self.losing, self.allocated):  # fmt: skip
                gauge.clear()
        for persona in self._personas:
            for r in HELD_REASONS:
                self.held.labels(persona, r.value)
            self.paused.labels(persona)
            self.trend.labels(persona).set(1.0)
        for p, a in self._accounts:
            self.drained.labels(p, a)
            self.in_flight.labels(p, a)
            self.submitted.labels(p, a)
            self.succeeded.labels(p, a)
            self.spend.labels(p, a)
            self.cooling.labels(p, a)
            self.key_rejected.labels(p, a)  # kept as it is across reloads: a reset would restart the alert's `for`
        for prio in JobPriority:
            self.queued.labels(prio.name)
        for s in JobState:
            self.jobs.labels(s.value)

    def _acct(self, provider: str, account: str) -> tuple[str, str]:
        return (provider, account) if (provider, account) in self._accounts else (OTHER, OTHER)

    def _prov(self, provider: str) -> str:
        return provider if provider in self._providers else OTHER

    def _persona(self, persona: str | None) -> str:
        return persona if persona in self._personas else OTHER

    def on_in_flight(self, provider: str, account: str, n: int) -> None:
        self.in_flight.labels(*self._acct(provider, account)).set(n)

    def on_submitted(self, provider: str, account: str) -> None:
        self.submitted.labels(*self._acct(provider, account)).inc()

    def on_succeeded(self, provider: str, account: str, latency: float, cost: float) -> None:
        labels = self._acct(provider, account)
        self.succeeded.labels(*labels).inc()
        if cost > 0:
            self.spend.labels(*labels).inc(cost)
        self.latency.labels(self._prov(provider)).observe(latency)

    def on_failed(self, provider: str, account: str, error_class: ErrorClass) -> None:
        self.failed.labels(*self._acct(provider, account), ErrorClass(error_class).value).inc()

    def on_cooldown(self, provider: str, account: str, cause: CooldownCause) -> None:
        self.cooldowns.labels(*self._acct(provider, account), CooldownCause(cause).value).inc()

    def on_cooling(self, provider: str, account: str, cooling: bool) -> None:
        self.cooling.labels(*self._acct(provider, account)).set(1 if cooling else 0)

    def on_key_rejected(self, accounts: Iterable[tuple[str, str]]) -> None:
        """`(provider, account)` whose key the breaker marks rejected now; every other account reads 0."""
        rejected = set(accounts)
        for p, a in self._accounts:
            self.key_rejected.labels(p, a).set(1 if (p, a) in rejected else 0)

    def on_dead(self, provider: str) -> None:
        self.dead.labels(self._prov(provider)).inc()

    def on_content(self, persona: str | None, quarantined: bool) -> None:
        (self.quarantined if quarantined else self.published).labels(self._persona(persona)).inc()

    def on_queue(self, counts: dict[tuple[str, int], int]) -> None:
        """`counts`: jobs per (state, priority), as `JobQueue.counts()` returns them."""
        waiting = {p: 0 for p in JobPriority}
        by_state = {s.value: 0 for s in JobState}
        for (state, prio), n in counts.items():
            if state in by_state:
                by_state[state] += n
            if state in (JobState.queued.value, JobState.failed.value) and prio in (0, 1, 2):
                waiting[JobPriority(prio)] += n
        for prio, n in waiting.items():
            self.queued.labels(prio.name).set(n)
        for s, n in by_state.items():
            self.jobs.labels(s).set(n)

    # -- budgets, held-back work, holds -----------------------------------------------------
    def on_budget(self, limits: BudgetLimits, spend: Spend) -> None:
        """Spend and limits per provider and globally (a limit the policy does not set has no series)."""
        for p in sorted(self._providers):
            day, month = spend.provider_day(p), spend.provider_month(p)
            _set(self.budget_spend, (p, "day"), day)
            _set(self.budget_spend, (p, "month"), month)
            _limits(self.budget_limit, (p,), limits.providers.get(p))
        _set(self.total_spend, ("day",), spend.day)
        _set(self.total_spend, ("month",), spend.month)
        _limits(self.total_limit, (), limits.total)

    def on_held(self, held: Iterable[tuple[str, Reason, int]]) -> None:
        """`(persona, reason, count)` of the last plan; every other series goes back to 0."""
        counts: dict[tuple[str, str], int] = {}
        for persona, reason, n in held:
            key = (self._persona(persona), Reason(reason).value)
            counts[key] = counts.get(key, 0) + n
        for persona in self._personas | {k[0] for k in counts}:
            for r in HELD_REASONS:
                self.held.labels(persona, r.value).set(counts.get((persona, r.value), 0))

    def on_holds(self, personas: Iterable[str], accounts: Iterable[str]) -> None:
        """Paused personas and drained accounts ("provider/account") now."""
        paused = {self._persona(p) for p in personas}
        for persona in self._personas:
            self.paused.labels(persona).set(1 if persona in paused else 0)
        self.on_drained(accounts)

    def on_drained(self, accounts: Iterable[str]) -> None:
        drained = {tuple(a.split("/", 1)) for a in accounts}
        for p, a in self._accounts:
            self.drained.labels(p, a).set(1 if (p, a) in drained else 0)

    def on_returns(
        self,
        returns: dict[str, tuple[float, float]],
        revenue: dict[str, float],
        losing: set[str],
        allocated: Iterable[tuple[str, str, int]],
    ) -> None:
        """One `returns` plan: per persona its estimate, revenue read, losing flag; the tracks it planned."""
        counts: dict[tuple[str, str], int] = {}
        for persona, reason, n in allocated:
            if persona in self._personas:
                counts[(persona, reason)] = counts.get((persona, reason), 0) + n
        for persona in self._personas:
            if persona in returns:
                self.return_per_dollar.labels(persona).set(returns[persona][0])
                self.return_sd.labels(persona).set(returns[persona][1])
            self.revenue.labels(persona).set(revenue.get(persona, 0.0))
            self.losing.labels(persona).set(1 if persona in losing else 0)
            for reason in ("floor", "expected_return"):
                self.allocated.labels(persona, reason).set(counts.get((persona, reason), 0))

    def on_business(
        self,
        pairs: dict[tuple[str, str], dict[str, float]],
        capture: dict[str, dict[str, float]],
        allowed: set[tuple[str, str]],
    ) -> None:
        """The business books (`platform_books`, `trend_capture`): series only for the (persona,
        platform) pairs the policy publishes to (`allowed`) and their platforms."""
        if allowed != self._pairs:  # the policy changed: no stale series
            self._pairs = set(allowed)
            for gauge in (self.platform_revenue, self.platform_roi, self.pair_revenue):
                gauge.clear()
        sums: dict[str, list[float]] = {platform: [0.0, 0.0] for _, platform in allowed}
        for (persona, platform), b in pairs.items():
            if (persona, platform) in allowed:
                self.pair_revenue.labels(persona, platform).set(b["revenue"])
                sums[platform][0] += b["revenue"]
                sums[platform][1] += b["spend"]
        for pair in allowed - set(pairs):
            self.pair_revenue.labels(*pair).set(0.0)
        for platform, (revenue, spend) in sums.items():
            self.platform_revenue.labels(platform).set(revenue)
            self.platform_roi.labels(platform).set(revenue / spend if spend > 0 else 0.0)
        for group in ("boosted", "rest"):
            self.trend_capture.labels(group).set(capture.get(group, {}).get("per_track", 0.0))

    def on_trend(self, factors: dict[str, float]) -> None:
        for persona, factor in factors.items():
            if persona in self._personas:
                self.trend.labels(persona).set(factor)


def _set(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
    gauge.labels(*labels).set(value)


def _limits(gauge: Gauge, labels: tuple[str, ...], budget: Budget | None) -> None:
    for period, limit in (("day", budget.daily if budget else None), ("month", budget.monthly if budget else None)):
        if limit is not None:
            gauge.labels(*labels, period).set(limit)
        else:
            with contextlib.suppress(KeyError):
                gauge.remove(*labels, period)
