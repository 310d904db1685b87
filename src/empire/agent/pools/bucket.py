"""Rate limits and concurrency slots: a pure token bucket, and the in-process limiter built on it.

`TokenBucket` is the whole algorithm, with time as an argument so that tests drive it with a fake
clock. The limiter port (`RateLimiter`, in `empire.agent.ports`) has two implementations with one
contract suite: `LocalLimiter` here (one process) and `RedisLimiter` in `empire.state.redis`
(an atomic Lua script, so N replicas together never exceed an account's limit).

Why never-reserve ("take now or tell me how long to wait") instead of reserving future tokens: a
job that reserved a token on an account which then starts failing would have to wait for it or
waste it; asking again is cheap, and the dispatcher serialises the waiting per account so the
question is asked once per token, not once per waiting job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LocalLimiter", "TokenBucket", "effective_burst"]


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `capacity`; starts full."""

    rate: float
    capacity: float
    tokens: float | None = None
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity < 1:
            raise ValueError("a token bucket needs rate > 0 and capacity >= 1")

    def _refill(self, now: float) -> None:
        if self.tokens is None or self.updated is None:
            self.tokens, self.updated = self.capacity, now
            return
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float, n: float = 1.0) -> float:
        """Take `n` tokens and return 0.0, or take nothing and return the seconds until `n` are there."""
        self._refill(now)
        assert self.tokens is not None
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds until `n` tokens are available, without taking any."""
        self._refill(now)
        assert self.tokens is not None
        return 0.0 if self.tokens >= n else (n - self.tokens) / self.rate


def effective_burst(rate_per_s: float, burst: int | None, margin_s: float) -> float:
    """The bucket size the pool uses: the provider's burst (default 1 s of rate) less a safety margin.

    The provider counts requests when they *arrive*; the pool counts them when it *sends*. Delays
    between the two vary (event-loop lag, connection set-up), so two requests sent a full token
    apart can arrive closer together. Keeping `margin_s` seconds of tokens in reserve absorbs that
    jitter, which is why the pool can run at its limit without ever being answered 429.
    """
    size = float(burst) if burst is not None else max(1.0, rate_per_s)
    return max(1.0, size - math.ceil(rate_per_s * margin_s))


class LocalLimiter:
    """The `RateLimiter` port for a single process: token buckets and slot sets in memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._slots: dict[str, dict[str, float]] = {}  # holder -> expiry

    async def try_acquire(self, key: str, rate: float, burst: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.capacity != burst:
            old = bucket
            bucket = TokenBucket(rate, burst)
            if old is not None and old.tokens is not None:  # policy reload: keep what was used
                bucket.tokens, bucket.updated = min(burst, old.tokens), old.updated
            self._buckets[key] = bucket
        return bucket.take(self._clock())

    def _live(self, key: str) -> dict[str, float]:
        now = self._clock()
        held = self._slots.setdefault(key, {})
        for holder in [h for h, until in held.items() if until <= now]:
            del held[holder]
        return held

    async def acquire_slot(self, key: str, holder: str, limit: int, ttl: float) -> bool:
        held = self._live(key)
        if holder not in held and len(held) >= limit:
            return False
        held[holder] = self._clock() + ttl
        return True

    async def release_slot(self, key: str, holder: str) -> None:
        self._slots.get(key, {}).pop(holder, None)

    async def renew_slots(self, key: str, holders: list[str], ttl: float) -> None:
        held = self._live(key)
        until = self._clock() + ttl
        for h in holders:
            if h in held:
                held[h] = until

    async def slots_in_use(self, key: str) -> int:
        return len(self._live(key))

    async def aclose(self) -> None:
        return None
