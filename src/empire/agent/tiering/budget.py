"""A bytes-per-second budget shared by all concurrent moves (a token bucket on the agent's clock).

Why on the Clock port and not `time.monotonic`: tests and the replay backtest run the sweep on a
fake clock, where waiting for the budget must advance fake time instantly. The bucket holds one
second of bytes; a request larger than that goes into debt and waits it off, so large objects are
never starved and the long-run rate never exceeds the budget.
"""

from __future__ import annotations

from datetime import datetime

import anyio

from empire.agent.ports import Clock

__all__ = ["ByteBudget"]


class ByteBudget:
    def __init__(self, bytes_per_second: float, clock: Clock, burst: float | None = None) -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.rate = float(bytes_per_second)
        self.burst = float(burst if burst is not None else bytes_per_second)
        self.clock = clock
        self._tokens = self.burst
        self._last: datetime | None = None
        self._lock = anyio.Lock()
        self.waited = 0.0  # seconds spent waiting, for tests and the benchmark

    async def acquire(self, n: int) -> None:
        """Take n bytes from the budget, waiting (on the clock) when it is overdrawn."""
        async with self._lock:
            now = self.clock.now()
            if self._last is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._last).total_seconds() * self.rate)
            self._last = now
            self._tokens -= n
            if self._tokens < 0:
                wait = -self._tokens / self.rate
                self.waited += wait
                await self.clock.sleep(wait)
