"""What to do after a failed attempt: re-route, back off, or dead-letter. PURE.

Exponential backoff with "full jitter" (AWS architecture blog: spreads retries of many jobs that
failed together, e.g. after a provider outage, instead of synchronising them into waves), capped
at `backoff_max`, and never shorter than the provider's `Retry-After`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from empire.agent.pools.errors import ErrorClass
from empire.policies.generation import RetryPolicy

__all__ = ["RetryDecision", "Verdict", "backoff_delay", "decide_retry"]


class Verdict(StrEnum):
    reroute = "reroute"  # try another account now; the attempt does not count
    retry = "retry"  # back to the queue with not_before = now + delay
    dead = "dead"  # dead-letter with the last error


@dataclass(frozen=True)
class RetryDecision:
    verdict: Verdict
    delay: float = 0.0
    attempts: int = 0  # the job's attempt count after this failure


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random, retry_after: float | None = None) -> float:
    """Full-jitter backoff for the `attempt`-th failure (1-based), at least `retry_after`."""
    base = policy.backoff_base.total_seconds()
    cap = policy.backoff_max.total_seconds()
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = rng.uniform(0.0, ceiling) if ceiling > 0 else 0.0
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap) if cap > 0 else retry_after)
    return delay


def decide_retry(
    error_class: ErrorClass,
    attempts: int,
    policy: RetryPolicy,
    rng: random.Random,
    retry_after: float | None = None,
) -> RetryDecision:
    """`attempts` is the count before this failure."""
    if error_class.account_level:
        return RetryDecision(Verdict.reroute, 0.0, attempts)
    if error_class is ErrorClass.bad_request:
        return RetryDecision(Verdict.dead, 0.0, attempts + 1)
    n = attempts + 1
    if n >= policy.max_attempts:
        return RetryDecision(Verdict.dead, 0.0, n)
    return RetryDecision(Verdict.retry, backoff_delay(n, policy, rng, retry_after), n)
