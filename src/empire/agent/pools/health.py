"""Per-account health: the circuit breaker (cooldown), in-flight count and latency EWMA.

The breaker opens (the account *cools down*) on any of:
- a 429: for the provider's `Retry-After`, else `cooldown.after_rate_limit`;
- `cooldown.server_errors` consecutive 5xx/timeouts: a provider failing every call is not
  "temporarily" failing, and sending it more jobs only burns their attempts (the LiteLLM
  complaint: repeated 500s never cooled an account down);
- `cooldown.failures` consecutive failures of any kind;
  both only while at least `cooldown.failure_rate` of the account's last `RECENT_CALLS` calls
  failed (resilience4j's failure-rate threshold). "Consecutive" means little on a key carrying a
  hundred requests at once: under 10 % of random 503s, three in a row come every thousand calls,
  and each opened the breaker of a healthy key for a second (13 openings in a 10,000-job run, a
  key's rate lost each time). A broken account fails every call and trips both conditions at its
  third error; a noisy one stays in service, its failed jobs re-routed at once (`dispatcher`).
- a 401/403: the key is dead or revoked; it rests `cooldown.after_auth_failure`.
After the cooldown the account is *half-open*: one probe at a time (routing), one failure
re-opens it at once, one success closes it. On errors the breaker opens for `cooldown.initial`
(1 s) and twice as long after each failed probe, up to `cooldown.duration` (60 s): random noise
(10 % of 503s make three in a row now and then) costs a key a second, a provider that stays
down is asked less and less often. (It opened for the full 60 s at once: one such run stopped a
key for a minute, and the pool reached 0.29 of its limit under 10 % of 503s.) When every key of a
provider fails together, that is the provider's outage, not N dead keys (`PoolRegistry`).
Time is an argument (`now`, seconds on a monotonic scale): the module is pure.

A 401/403 also marks the key *rejected* (`rejected`: that error), which is not just a longer cooldown:
a rate limit or a run of 5xx passes by itself, a revoked key does not. The mark stays until the
key is seen working again: a success, or a probe after the cooldown that got past authentication
(any other answer). Late answers to requests sent before the rejection do not clear it. Routing
uses the mark to tell "wait for the earliest account" from "no account will ever take this job"
(`PoolRegistry.rejected_keys`); the dispatcher exports it, whenever it changes, as the gauge
`empire_pool_account_key_rejected` (the PrometheusRule's `EmpireProviderKeyRejected`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from empire.agent.pools.errors import ErrorClass
from empire.policies.generation import CooldownPolicy

__all__ = ["AccountState", "CooldownCause"]

EWMA_ALPHA = 0.2
RECENT_CALLS = 20  # the calls the failure rate is measured over


class CooldownCause(StrEnum):
    rate_limited = "rate_limited"
    server_errors = "server_errors"
    failures = "failures"
    auth = "auth"


@dataclass
class AccountState:
    provider: str
    name: str
    in_flight: int = 0
    served: int = 0  # jobs routed here (for the weighted strategy)
    latency_ewma: float | None = None
    consecutive_failures: int = 0
    consecutive_server_errors: int = 0
    open_until: float = 0.0
    half_open: bool = False
    failed_probes: int = 0  # half-open probes that failed since the breaker last closed (its backoff)
    last_cause: CooldownCause | None = None
    rejected: str | None = None  # the 401/403, while no sign since says the key works (module doc)
    last_error: str | None = None  # the account's last failure (names the call, never the key)
    token_ready_at: float = 0.0  # local estimate of when the rate limiter has a token again
    slots_full_until: float = 0.0  # other replicas hold every shared slot: look again after this
    cooldowns: dict[CooldownCause, int] = field(default_factory=dict)
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT_CALLS))  # True: that call failed

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.name}"

    def cooling(self, now: float) -> bool:
        return now < self.open_until

    @property
    def key_rejected(self) -> bool:
        return self.rejected is not None

    def observe_latency(self, seconds: float) -> None:
        self.latency_ewma = seconds if self.latency_ewma is None else (
            EWMA_ALPHA * seconds + (1 - EWMA_ALPHA) * self.latency_ewma
        )  # fmt: skip

    def failure_share(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else 0.0

    def on_success(self, now: float) -> None:
        self.recent.append(False)
        self.rejected = None
        self.consecutive_failures = 0
        self.consecutive_server_errors = 0
        if now >= self.open_until:
            self.half_open = False
            self.failed_probes = 0

    def _open(self, now: float, seconds: float, cause: CooldownCause) -> CooldownCause:
        self.open_until = max(self.open_until, now + seconds)
        self.half_open = True
        self.last_cause = cause
        self.consecutive_failures = 0
        self.consecutive_server_errors = 0
        self.cooldowns[cause] = self.cooldowns.get(cause, 0) + 1
        return cause

    def on_failure(
        self,
        error_class: ErrorClass,
        now: float,
        policy: CooldownPolicy,
        retry_after: float | None = None,
        error: str | None = None,
    ) -> CooldownCause | None:
        """Record a failed call; return the cause when this failure opened the breaker."""
        if error_class is ErrorClass.auth:
            self.rejected = error or f"{self.key}: key rejected"
        elif self.rejected is not None and now >= self.open_until:
            self.rejected = None  # a probe after the cooldown got past authentication
        if error_class is ErrorClass.bad_request:
            return None  # the request was bad, not the account
        self.last_error = error or self.last_error
        if error_class is ErrorClass.rate_limited:
            wait = retry_after if retry_after is not None else policy.after_rate_limit.total_seconds()
            return self._open(now, wait, CooldownCause.rate_limited)
        if error_class is ErrorClass.auth:
            return self._open(now, policy.after_auth_failure.total_seconds(), CooldownCause.auth)
        if self.half_open and now >= self.open_until:  # the probe failed
            self.failed_probes += 1
            return self._open(now, policy.backoff(self.failed_probes), CooldownCause.failures)
        self.consecutive_failures += 1
        self.recent.append(True)
        broken = self.failure_share() >= policy.failure_rate
        if error_class in (ErrorClass.server_error, ErrorClass.timeout):
            self.consecutive_server_errors += 1
            if self.consecutive_server_errors >= policy.server_errors and broken:
                return self._open(now, policy.backoff(self.failed_probes), CooldownCause.server_errors)
        if self.consecutive_failures >= policy.failures and broken:
            return self._open(now, policy.backoff(self.failed_probes), CooldownCause.failures)
        return None

    @property
    def failing(self) -> bool:
        """Open for errors (5xx, timeouts, failures), not for a rate limit or a rejected key."""
        return self.last_cause in (CooldownCause.server_errors, CooldownCause.failures) and not self.key_rejected
