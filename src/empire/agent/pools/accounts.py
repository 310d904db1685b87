"""The pools as the dispatcher sees them: every enabled account of every provider, with its
limits from the policy and its live health, and the candidates routing chooses from.

Rebuilt on policy reload (`PoolRegistry.update`): limits change at once, health and counters of
accounts that still exist carry over (a reload must not un-cool a rate-limited account).
`drained` accounts ("provider/account": an alert's `drain_account`, `empire pools hold account`,
or a provider whose adapter could not be built) are no candidates: routing falls back or waits.

`rejected_keys` answers the question routing's `Wait` cannot: will waiting ever help? Not when
every account a job may use has had its key rejected (401/403): then the job is dead-lettered
with that error instead of waiting forever. A drained account whose key was not rejected is
waited for (a hold is lifted), and so is one whose cooldown is over (it gets its probe).

A *provider outage*: every live account of a provider (not drained, key not rejected) cools
down for errors at once, as a 5-second blip across all keys makes them. Treated as N broken keys,
each would probe on its own and back off on its own; treated as what it is, the provider gets one
backoff: the accounts wait together (aligned to the latest reopening), one probe at a time goes
to the provider, each failed probe doubles the wait (`CooldownPolicy.backoff`), and the first
success ends the outage and gives every account its probe at once (`failed`, `succeeded`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from empire.agent.pools.bucket import effective_burst
from empire.agent.pools.budget import account_cost
from empire.agent.pools.errors import ErrorClass
from empire.agent.pools.health import AccountState, CooldownCause
from empire.agent.pools.routing import Candidate, ProviderCandidates
from empire.agent.ports import Window
from empire.policies.generation import Account, Provider

__all__ = ["AccountLimits", "PoolRegistry"]

logger = logging.getLogger(__name__)

_CAUSE_CLASS = {
    CooldownCause.rate_limited: ErrorClass.rate_limited,
    CooldownCause.server_errors: ErrorClass.server_error,
    CooldownCause.failures: ErrorClass.unknown,
    CooldownCause.auth: ErrorClass.auth,
}


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
    window: Window | None = None  # a fixed or sliding "N per minute" instead of the token bucket

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.name}"


def _limits(p: Provider, a: Account, order: int, margin_s: float) -> AccountLimits:
    rate = a.requests_per_minute / 60.0
    window = None
    if a.limit_model != "token_bucket":
        kind = "fixed" if a.limit_model == "fixed_window" else "sliding"
        window = Window(kind, max(1, math.floor(a.requests_per_minute)), 60.0, margin_s)
    return AccountLimits(
        provider=p.name, name=a.name, rate=rate, burst=effective_burst(rate, a.burst, margin_s),
        max_concurrent=a.max_concurrent, cost=account_cost(p, a.name), weight=a.weight, order=order, window=window,
    )  # fmt: skip


class PoolRegistry:
    def __init__(self, providers: Iterable[Provider], margin_s: float = 0.25) -> None:
        self.margin_s = margin_s
        self.providers: dict[str, Provider] = {}
        self.limits: dict[str, AccountLimits] = {}
        self.states: dict[str, AccountState] = {}
        self.drained: frozenset[str] = frozenset()
        self.outages: dict[str, float] = {}  # provider -> when every live account began failing (module doc)
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
        self.outages = {p: since for p, since in self.outages.items() if p in self.providers}

    def failed(
        self,
        key: str,
        error_class: ErrorClass,
        now: float,
        retry_after: float | None = None,
        error: str | None = None,
    ) -> CooldownCause | None:
        """Record a failed call on account `key` (`AccountState.on_failure`); the cause when it
        opened the breaker. An opening for errors may start (or prolong) its provider's outage."""
        st = self.states[key]
        cause = st.on_failure(error_class, now, self.providers[st.provider].cooldown, retry_after, error)
        if cause is None or not st.failing:
            return cause
        live = self._live(st.provider)
        if st.provider not in self.outages:
            if not all(o.failing and o.cooling(now) for o in live):
                return cause
            self.outages[st.provider] = now
            logger.warning("provider %s: every account fails (%s): a provider outage; one probe at a time, "
                           "backing off", st.provider, st.last_error or cause.value)  # fmt: skip
        until = max(o.open_until for o in live)
        for o in live:  # one backoff for the provider: they reopen together, one of them probes
            o.open_until = until
        return cause

    def succeeded(self, key: str, now: float) -> None:
        """Record a success on account `key`; it ends its provider's outage, if any: every account
        that failed with it gets its probe now instead of waiting out its own backoff."""
        st = self.states[key]
        st.on_success(now)
        since = self.outages.pop(st.provider, None)
        if since is None:
            return
        for o in self._live(st.provider):
            if o is not st and o.failing and o.cooling(now):
                o.open_until, o.failed_probes = now, 0
        logger.warning("provider %s answers again: the outage lasted %.1fs", st.provider, now - since)

    def _live(self, provider: str) -> list[AccountState]:
        """Accounts of `provider` that could serve but for their health: not drained, key not rejected."""
        return [self.states[lim.key] for lim in self.accounts_of(provider)
                if lim.key not in self.drained and not self.states[lim.key].key_rejected]  # fmt: skip

    def _prober(self, provider: str) -> str | None:
        """During `provider`'s outage, the one account that may probe it: the first to reopen."""
        live = [lim for lim in self.accounts_of(provider)
                if lim.key not in self.drained and not self.states[lim.key].key_rejected]  # fmt: skip
        if not live:
            return None
        return min(live, key=lambda lim: (self.states[lim.key].open_until, lim.order)).key

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

    def rejected_keys(self, providers: Iterable[str], now: float) -> list[AccountState] | None:
        """The accounts of these providers when every one has a rejected key and none can be probed
        now (still cooling down, or drained); None when some account may yet serve, or none exists."""
        out: list[AccountState] = []
        for name in providers:
            for lim in self.accounts_of(name):
                st = self.states[lim.key]
                if not st.key_rejected or not (st.cooling(now) or lim.key in self.drained):
                    return None
                out.append(st)
        return out or None

    def rejected_accounts(self) -> list[tuple[str, str]]:
        """(provider, account) of every account whose key is marked rejected (the metric's view)."""
        return [(st.provider, st.name) for st in self.states.values() if st.key_rejected]

    def all_cooling(self, providers: Iterable[str], now: float) -> list[AccountState] | None:
        """The cooling accounts of these providers when every account that is not drained cools
        down (the job waits for the earliest); None when one could take a job now, or none exists."""
        out: list[AccountState] = []
        for name in providers:
            for lim in self.accounts_of(name):
                st = self.states[lim.key]
                if st.cooling(now):
                    out.append(st)
                elif lim.key not in self.drained:
                    return None
        return out or None

    def wait_reason(self, providers: Iterable[str], now: float, wall: datetime) -> tuple[str, ErrorClass] | None:
        """Why a job waits, for its row (`empire jobs list`), when every account cools down: each
        account's error and until when (`wall` is `now` on the wall clock), and the class of the
        error of the account that reopens first. None when the job does not wait for a cooldown."""
        cooling = self.all_cooling(providers, now)
        if cooling is None:
            return None
        cooling.sort(key=lambda st: st.open_until)
        parts = []
        for st in cooling:
            until = (wall + timedelta(seconds=st.open_until - now)).strftime("%H:%M:%SZ")
            parts.append(
                f"{st.rejected} (key rejected)" if st.rejected else f"{st.last_error or st.key} (until {until})"
            )
        first = cooling[0].last_cause
        cls = _CAUSE_CLASS[first] if first is not None else ErrorClass.unknown
        return "every account cools down: " + "; ".join(parts), cls

    def breakers(self, now: float, wall: datetime) -> dict[str, dict[str, Any]]:
        """Accounts whose breaker is open or whose key was rejected, by "provider/account":
        `state` (`key_rejected` or `cooling`), `cause`, `until` (wall clock) and `last_error`."""
        out: dict[str, dict[str, Any]] = {}
        for key, st in sorted(self.states.items()):
            cooling = st.cooling(now)
            if not (cooling or st.key_rejected):
                continue
            until = wall + timedelta(seconds=st.open_until - now) if cooling else None
            out[key] = {"state": "key_rejected" if st.key_rejected else "cooling",
                        "cause": st.last_cause.value if st.last_cause else None,
                        "until": until.isoformat() if until else None,
                        "last_error": st.rejected or st.last_error}  # fmt: skip
        return out

    def candidates(self, providers: Iterable[str], now: float) -> list[ProviderCandidates]:
        groups: list[ProviderCandidates] = []
        for name in providers:
            p = self.providers[name]
            prober = self._prober(name) if name in self.outages else None
            cands = []
            for lim in self.accounts_of(name):
                if lim.key in self.drained or (prober is not None and lim.key != prober):
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
