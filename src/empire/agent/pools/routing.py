"""Routing: which account of which provider serves the next job. PURE (time is an argument).

Providers are tried in the persona's preference order, then each provider's fallbacks. A provider
*cannot serve* when every one of its accounts is cooling down (breaker open), disabled or over
budget; only then does routing fall back to the next provider. An account that is merely busy
(no rate token yet, every concurrency slot taken) is worth waiting for: its provider was
preferred, and the wait is short and bounded. When no account can take the job now, the answer
is `Wait(until)`: the earliest instant one could. Jobs wait for that instant instead of failing.

Strategies among the accounts that can take a job now:
- `least-busy`: lowest in-flight / max-concurrent;
- `lowest-latency`: lowest latency EWMA (an account never measured goes first, to measure it);
- `cheapest`: lowest cost per job;
- `weighted`: traffic in proportion to the accounts' weights (deficit: lowest served / weight).
Ties fall to the less busy account, then to policy order, so routing is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from empire.policies.generation import RoutingStrategy

__all__ = ["Candidate", "ProviderCandidates", "Route", "Wait", "choose", "route", "without"]


@dataclass(frozen=True)
class Candidate:
    provider: str
    account: str
    in_flight: int
    max_concurrent: int
    cost: float
    weight: float = 1.0
    served: int = 0
    latency: float | None = None
    cooling_until: float = 0.0  # breaker open until (disabled accounts are not candidates at all)
    ready_at: float = 0.0  # earliest time a rate token (or a shared slot) is expected
    order: int = 0

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.account}"

    @property
    def utilisation(self) -> float:
        return self.in_flight / self.max_concurrent


@dataclass(frozen=True)
class ProviderCandidates:
    provider: str
    strategy: RoutingStrategy
    accounts: tuple[Candidate, ...]


@dataclass(frozen=True)
class Route:
    candidate: Candidate


@dataclass(frozen=True)
class Wait:
    until: float | None  # None: nothing will free up by itself (no usable account at all)
    # some usable account is at max concurrency: a finishing job frees a slot, maybe before `until`
    # (the others' next token: a full minute's window away, it left the last jobs of a run
    # asleep while a busy key had room again)
    for_slot: bool = False


def _strategy_key(strategy: RoutingStrategy, c: Candidate) -> tuple[float, ...]:
    busy = (c.utilisation, float(c.in_flight), float(c.order))
    if strategy is RoutingStrategy.least_busy:
        return busy
    if strategy is RoutingStrategy.lowest_latency:
        return (0.0 if c.latency is None else 1.0, c.latency or 0.0, *busy)
    if strategy is RoutingStrategy.cheapest:
        return (c.cost, *busy)
    return ((c.served + 1) / c.weight, float(c.order))


def choose(strategy: RoutingStrategy, available: Sequence[Candidate]) -> Candidate | None:
    if not available:
        return None
    return min(available, key=lambda c: _strategy_key(strategy, c))


def route(providers: Sequence[ProviderCandidates], now: float) -> Route | Wait:
    """The account for the next job, or how long to wait for one."""
    earliest: float | None = None
    for group in providers:
        live = [c for c in group.accounts if c.cooling_until <= now]
        if not live:  # cannot serve: everything cooling; remember when the first one reopens
            for c in group.accounts:
                earliest = c.cooling_until if earliest is None else min(earliest, c.cooling_until)
            continue
        ready = [c for c in live if c.ready_at <= now and c.in_flight < c.max_concurrent]
        picked = choose(group.strategy, ready)
        if picked is not None:
            return Route(picked)
        with_room = [c for c in live if c.in_flight < c.max_concurrent]
        full = len(with_room) < len(live)  # a finishing job there frees a slot sooner, maybe
        if with_room:
            soonest = min(c.ready_at for c in with_room)
            return Wait(soonest if earliest is None else min(earliest, soonest), for_slot=full)
        return Wait(earliest, for_slot=True)
    return Wait(earliest)


def without(providers: Sequence[ProviderCandidates], key: str) -> list[ProviderCandidates]:
    """The candidates less one account ("provider/account"): to route a job away from the one that failed it."""
    return [replace(g, accounts=tuple(c for c in g.accounts if c.key != key)) for g in providers]
