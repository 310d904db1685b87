"""Per-caller request rate for the agent's HTTP port: token buckets keyed by who is calling.

Why per caller and not one global limit: one script looping on `GET /v1/jobs` must not take the
API away from everyone else (or from the kubelet's probes, which are never limited). A caller is
a token's name once authenticated, else the client address; failed authentications are counted
per address too, so guessing tokens costs the guesser, not the database.

The buckets live in process (a replica limits what reaches it, which is what protects it) and
at most `max_keys` of them are kept, least recently used dropped first, so a crowd of addresses
cannot grow this without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Buckets"]


class Buckets:
    def __init__(
        self, rate: float, burst: float, *, max_keys: int = 10_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.max_keys, self._now = rate, burst, max_keys, monotonic
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str, cost: float = 1.0) -> float:
        """0.0 and one request's worth taken, or the seconds until the caller may try again."""
        if self.rate <= 0:
            return 0.0
        now = self._now()
        tokens, at = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= cost:
            self._state[key] = (tokens - cost, now)
            wait = 0.0
        else:
            self._state[key] = (tokens, now)
            wait = (cost - tokens) / self.rate
        self._state.move_to_end(key)
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return wait

    def wait(self, key: str) -> float:
        """Seconds until `key` has a whole request's worth again (0.0 now), taking nothing."""
        if self.rate <= 0 or key not in self._state:
            return 0.0
        tokens, at = self._state[key]
        tokens = min(self.burst, tokens + (self._now() - at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
