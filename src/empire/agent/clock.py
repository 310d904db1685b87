"""Clocks: the wall clock for the daemon, a fake one for tests and the backtest.

The fake clock's `sleep` advances time instantly, which is how the replay backtest runs 60 days
in seconds and how tests exercise windows and timeouts without waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

__all__ = ["FakeClock", "SystemClock"]


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
