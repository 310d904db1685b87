"""Clocks: the wall clock for the daemon, a fake one for tests and the backtest, a fast one for
`empire run --simulate`.

The fake clock's `sleep` advances time instantly, which is how the replay backtest runs 60 days
in seconds and how tests exercise windows and timeouts without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio

__all__ = ["FakeClock", "ScaledClock", "SystemClock"]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """Starts at `start` (aware UTC); `sleep` and `advance` move it forward without waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await anyio.lowlevel.checkpoint()


class ScaledClock:
    """Simulated time running `speed` times faster than the wall clock, from `start` (`empire run
    --simulate`). `now()` follows the monotonic clock, so the daemon's tasks, its HTTP handlers and
    the scheduler all read one consistent simulated time; `sleep(s)` waits `s / speed` real seconds.
    Code that uses `anyio.sleep` or `time.monotonic` directly (the pools' rate limiters, the lease
    keeper) stays on wall time: a provider's requests-per-minute limit is a real one."""

    def __init__(self, start: datetime, speed: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs an aware datetime")
        if not speed > 0:
            raise ValueError(f"speed must be above 0, not {speed}")
        self.start, self.speed, self._monotonic = start, float(speed), monotonic
        self._t0 = monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(self._monotonic() - self._t0) * self.speed)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds) / self.speed)
