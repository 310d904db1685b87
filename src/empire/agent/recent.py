"""`RecentSeries`: the latest steps of one demand signal on a fixed time grid, filled incrementally.

Why: every tick the forecaster needs the level window, the recent volatility and, for the skill
measure, the same window one season earlier. Asking the metric source for all of that each tick
costs three range queries per target per tick (and, in the backtest, most of the run time). Kept
here, a tick asks only for what arrived since the last one (plus a little overlap, so a value that
reached the source late still lands in its slot) and reads the rest from memory.

The grid is absolute (slot k is the instant k x step), so ticks that drift a little do not shift
it. The latest slot is the last one at or before `now`, and a point belongs to the slot at or before
it: rounding put a tick late in its step on a slot past `now` (no value yet), and rounding only the
points (with `now` floored) put an off-grid trace's latest value one step late. Missing values are
NaN. No clock: the caller passes `now`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

__all__ = ["RecentSeries"]

Fetch = Callable[[datetime, datetime], Awaitable[list[tuple[datetime, float]]]]
_OVERLAP = 2  # slots asked for again each time


class RecentSeries:
    """The last `size` slots of `step` seconds ending at the latest update (oldest first)."""

    def __init__(self, step: float, size: int) -> None:
        self.step = float(step)
        self.size = int(size)
        self.values: deque[float] = deque(maxlen=self.size)
        self.end: int | None = None  # slot of the last value

    def slot(self, at: datetime) -> int:
        """The slot at or before `at` (floor, with a little slack for float error): the same rule for
        `now` and for every point, so a point sampled off the grid (a trace at second 53 of each
        minute) lands in the slot it belongs to, never in one past `now` nor one step late."""
        return math.floor(at.timestamp() / self.step + 1e-6)

    async def update(self, fetch: Fetch, now: datetime) -> None:
        """Bring the series up to `now` with one query of the slots not seen yet."""
        last = self.slot(now)
        if self.end is None or last - self.end >= self.size or last < self.end:
            self.values.clear()
            first = last - self.size + 1
        else:
            first = max(self.end - _OVERLAP + 1, last - self.size + 1)
        if self.end is not None and first <= self.end:  # re-asked slots are replaced below
            for _ in range(self.end - first + 1):
                self.values.pop()
        fresh = [math.nan] * (last - first + 1)
        start = datetime.fromtimestamp(first * self.step, UTC)
        for at, value in await fetch(start, now):
            i = self.slot(at) - first
            if 0 <= i < len(fresh) and math.isfinite(value):
                fresh[i] = value
        self.values.extend(fresh)
        self.end = last

    def back(self, first: int, last: int = 0) -> list[float]:
        """The values `first` .. `last` steps before the latest slot (oldest first; NaN where unknown)."""
        n = len(self.values)
        lo, hi = n - 1 - first, n - 1 - last
        if hi < 0:
            return [math.nan] * (first - last + 1)
        pad = [math.nan] * max(0, -lo)
        return pad + [self.values[i] for i in range(max(lo, 0), hi + 1)]

    def latest(self) -> float:
        return self.values[-1] if self.values else math.nan
