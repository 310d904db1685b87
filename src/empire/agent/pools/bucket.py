"""Rate limits and concurrency slots: a pure token bucket and request windows, and the in-process
limiter built on them.

`TokenBucket` is the whole algorithm, with time as an argument so that tests drive it with a fake
clock. `FixedWindow` and `SlidingWindow` are the limits providers publish as "N requests per
minute" (a counter reset each minute, or any 60 s); a token bucket holding such a provider to an
even rate leaves most of a window unused when work arrives in bursts (1,200 jobs on 5 keys of
120/min: 120 s at 2/s each where the windows allow about 67 s). The limiter port (`RateLimiter`, in `empire.agent.ports`) has two implementations with one
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from empire.agent.ports import Window

__all__ = ["FixedWindow", "LocalLimiter", "SlidingWindow", "TokenBucket", "effective_burst"]


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


@dataclass
class SlidingWindow:
    """At most `limit` takes in any `seconds` interval (a log of the last `limit` takes)."""

    limit: int
    seconds: float
    log: deque[float] = field(default_factory=deque)

    def take(self, now: float) -> float:
        """Take one and return 0.0, or return the seconds until the oldest take leaves the window."""
        while self.log and self.log[0] <= now - self.seconds:
            self.log.popleft()
        if len(self.log) < self.limit:
            self.log.append(now)
            return 0.0
        return self.log[0] + self.seconds - now


@dataclass
class FixedWindow:
    """At most `limit` takes per window; windows start at `margin` past multiples of `seconds`."""

    limit: int
    seconds: float
    margin: float = 0.0
    index: int | None = None
    count: int = 0

    def take(self, now: float) -> float:
        """Take one and return 0.0, or return the seconds until the next window opens."""
        index = math.floor((now - self.margin) / self.seconds)
        if index != self.index:
            self.index, self.count = index, 0
        if self.count < self.limit:
            self.count += 1
            return 0.0
        return (index + 1) * self.seconds + self.margin - now


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

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._clock, self._wall = clock, wall  # fixed windows reset on the wall clock's minutes, as providers'
        self._buckets: dict[str, TokenBucket] = {}
        self._windows: dict[str, tuple[Window, SlidingWindow | FixedWindow]] = {}
        self._slots: dict[str, dict[str, float]] = {}  # holder -> expiry

    async def try_acquire(self, key: str, rate: float, burst: float, window: Window | None = None) -> float:
        if window is not None:
            return self._window(key, window)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.capacity != burst:
            old = bucket
            bucket = TokenBucket(rate, burst)
            if old is not None and old.tokens is not None:  # policy reload: keep what was used
                bucket.tokens, bucket.updated = min(burst, old.tokens), old.updated
            self._buckets[key] = bucket
        return bucket.take(self._clock())

    def _window(self, key: str, window: Window) -> float:
        known = self._windows.get(key)
        if known is None or known[0] != window:
            counter: SlidingWindow | FixedWindow = (
                SlidingWindow(window.limit, window.seconds + window.margin) if window.kind == "sliding"
                else FixedWindow(window.limit, window.seconds, window.margin)
            )  # fmt: skip
            old = known[1] if known is not None else None
            if isinstance(old, SlidingWindow) and isinstance(counter, SlidingWindow):  # a policy reload:
                counter.log = old.log  # what was sent still counts
            elif isinstance(old, FixedWindow) and isinstance(counter, FixedWindow):
                counter.index, counter.count = old.index, old.count
            known = self._windows[key] = (window, counter)
        counter = known[1]
        return counter.take(self._clock() if isinstance(counter, SlidingWindow) else self._wall())

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
