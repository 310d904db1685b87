"""Routing strategies, fallbacks and wait-for-earliest. PURE."""

from __future__ import annotations

from empire.agent.pools.routing import Candidate, ProviderCandidates, Route, Wait, route
from empire.policies.generation import RoutingStrategy as S


def c(name: str, provider: str = "p", **kw: object) -> Candidate:
    base: dict = {"in_flight": 0, "max_concurrent": 10, "cost": 1.0}
    base.update(kw)
    return Candidate(provider=provider, account=name, **base)


def pick(strategy: S, *cands: Candidate, now: float = 0.0) -> str:
    r = route([ProviderCandidates("p", strategy, cands)], now)
    assert isinstance(r, Route), r
    return r.candidate.account


def test_least_busy_uses_utilisation_not_raw_counts() -> None:
    assert pick(S.least_busy, c("a", in_flight=5, max_concurrent=10), c("b", in_flight=3, max_concurrent=4)) == "a"
    assert pick(S.least_busy, c("a", in_flight=2, order=0), c("b", in_flight=1, order=1)) == "b"


def test_cheapest_then_least_busy() -> None:
    assert pick(S.cheapest, c("a", cost=0.08), c("b", cost=0.06), c("c", cost=0.06, in_flight=3)) == "b"


def test_lowest_latency_measures_unknown_accounts_first() -> None:
    assert pick(S.lowest_latency, c("a", latency=2.0), c("b", latency=1.0)) == "b"
    assert pick(S.lowest_latency, c("a", latency=0.5), c("b", latency=None)) == "b"


def test_weighted_shares_traffic_by_weight() -> None:
    served = {"a": 0, "b": 0}
    for _ in range(400):
        name = pick(S.weighted, c("a", weight=3.0, served=served["a"]), c("b", weight=1.0, served=served["b"], order=1))
        served[name] += 1
    assert served == {"a": 300, "b": 100}


def test_full_or_cooling_accounts_are_skipped() -> None:
    assert pick(S.cheapest, c("a", cost=0.0, in_flight=10), c("b", cost=1.0)) == "b"
    assert pick(S.cheapest, c("a", cost=0.0, cooling_until=5.0), c("b", cost=1.0), now=1.0) == "b"
    assert pick(S.cheapest, c("a", cost=0.0, cooling_until=5.0), c("b", cost=1.0), now=6.0) == "a"


def test_fallback_only_when_the_preferred_provider_cannot_serve() -> None:
    primary = ProviderCandidates("p", S.least_busy, (c("a", ready_at=0.2),))
    backup = ProviderCandidates("q", S.least_busy, (c("z", provider="q"),))
    # the preferred account is only waiting for a token: wait for it, do not fall back
    assert route([primary, backup], 0.0) == Wait(0.2)
    cooling = ProviderCandidates("p", S.least_busy, (c("a", cooling_until=30.0),))
    r = route([cooling, backup], 0.0)
    assert isinstance(r, Route) and r.candidate.provider == "q"


def test_when_everything_cools_down_jobs_wait_for_the_earliest() -> None:
    group = ProviderCandidates("p", S.least_busy, (c("a", cooling_until=30.0), c("b", cooling_until=12.0)))
    other = ProviderCandidates("q", S.least_busy, (c("z", provider="q", cooling_until=20.0),))
    assert route([group, other], 10.0) == Wait(12.0)


def test_all_slots_taken_waits_for_a_slot() -> None:
    group = ProviderCandidates("p", S.least_busy, (c("a", in_flight=10), c("b", in_flight=10)))
    r = route([group], 0.0)
    assert isinstance(r, Wait) and r.for_slot


def test_no_accounts_at_all() -> None:
    assert route([], 0.0) == Wait(None)


def test_a_busy_account_with_room_soon_is_waited_for_as_a_slot_not_for_the_others_window() -> None:
    # b's window is spent for 50 s; a is at its concurrency: the job waits for a's slot to free
    group = ProviderCandidates("p", S.least_busy, (c("a", in_flight=10), c("b", ready_at=50.0)))
    assert route([group], 0.0) == Wait(50.0, for_slot=True)
