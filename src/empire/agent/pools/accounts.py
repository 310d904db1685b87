"""The pools as the dispatcher sees them: every enabled account of every provider, with its
limits from the policy and its live health, and the candidates routing chooses from.

Rebuilt on policy reload (`PoolRegistry.update`): limits change at once, health and counters of
accounts that still exist carry over (a reload must not un-cool a rate-limited account).
`drained` accounts ("provider/account": an alert's `drain_account`, `empire pools hold account`,
or a provider whose adapter could not be built) are no candidates: routing falls back or waits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from empire.agent.pools.bucket import effective_burst
from empire.agent.pools.budget import account_cost
from empire.agent.pools.health import AccountState
from empire.agent.pools.routing import Candidate, ProviderCandidates
from empire.policies.generation import Account, Provider

__all__ = ["AccountLimits", "PoolRegistry"]


@dataclass(frozen=True)
class AccountLimits:
    provider: str
    name: str
    rate: float  # tokens per second
    burst: float  # the pool's bucket size (the provider's burst less the safety margin)
    max_concurrent: int
    cost: float
    weight: float
    order: int

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.name}"


def _limits(p: Provider, a: Account, order: int, margin_s: float) -> AccountLimits:
    rate = a.requests_per_minute / 60.0
    return AccountLimits(
        provider=p.name, name=a.name, rate=rate, burst=effective_burst(rate, a.burst, margin_s),
        max_concurrent=a.max_concurrent, cost=account_cost(p, a.name), weight=a.weight, order=order,
    )  # fmt: skip


class PoolRegistry:
    def __init__(self, providers: Iterable[Provider], margin_s: float = 0.25) -> None:
        self.margin_s = margin_s
        self.providers: dict[str, Provider] = {}
        self.limits: dict[str, AccountLimits] = {}
        self.states: dict[str, AccountState] = {}
        self.drained: frozenset[str] = frozenset()
        self.update(providers)

    def update(self, providers: Iterable[Provider]) -> None:
        self.providers = {p.name: p for p in providers}
        limits: dict[str, AccountLimits] = {}
        for p in self.providers.values():
            for i, a in enumerate(p.accounts):
                if a.enabled:
                    lim = _limits(p, a, i, self.margin_s)
                    limits[lim.key] = lim
        self.limits = limits
        self.states = {k: self.states.get(k) or AccountState(lim.provider, lim.name) for k, lim in limits.items()}

    def accounts_of(self, provider: str) -> list[AccountLimits]:
        return [lim for lim in self.limits.values() if lim.provider == provider]

    def route_order(self, preferred: Iterable[str]) -> list[str]:
        """Providers to try for a job: its preference order, each followed by its fallbacks."""
        out: list[str] = []
        queue = list(preferred)
        while queue:
            name = queue.pop(0)
            if name in out or name not in self.providers:
                continue
            out.append(name)
            queue[0:0] = list(self.providers[name].fallback)
        return out

    def candidates(self, providers: Iterable[str], now: float) -> list[ProviderCandidates]:
        groups: list[ProviderCandidates] = []
        for name in providers:
            p = self.providers[name]
            cands = []
            for lim in self.accounts_of(name):
                if lim.key in self.drained:
                    continue
                st = self.states[lim.key]
                # half-open after a cooldown: one probe at a time until a success closes the breaker
                limit = 1 if st.half_open and not st.cooling(now) else lim.max_concurrent
                cands.append(
                    Candidate(
                        provider=name, account=lim.name, in_flight=st.in_flight, max_concurrent=limit,
                        cost=lim.cost, weight=lim.weight, served=st.served, latency=st.latency_ewma,
                        cooling_until=st.open_until, ready_at=max(st.token_ready_at, st.slots_full_until),
                        order=lim.order,
                    )
                )  # fmt: skip
            groups.append(ProviderCandidates(name, p.routing, tuple(cands)))
        return groups
