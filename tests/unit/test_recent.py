"""`RecentSeries`: the latest slot is the last one at or before `now`, whatever the tick's phase."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

from empire.agent.recent import RecentSeries

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _fetch(values: dict[int, float]):
    async def fetch(start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        """A metric source: one point per whole second in [start, end], as a range query answers."""
        first, last = math.ceil(start.timestamp()), math.floor(end.timestamp())
        return [(datetime.fromtimestamp(t, UTC), values[t]) for t in range(first, last + 1) if t in values]

    return fetch


def test_a_tick_late_in_the_second_sees_the_latest_value() -> None:
    base = int(T0.timestamp())
    values = {base + i: float(i) for i in range(10)}
    for phase in (0.0, 0.2, 0.5, 0.7, 0.99):
        series = RecentSeries(1.0, 3)
        now = T0 + timedelta(seconds=9 + phase)
        asyncio.run(series.update(_fetch(values), now))
        # was NaN from a phase of 0.5 on: the slot was rounded up to second 10, which has no value yet
        assert series.latest() == 9.0, phase
        assert series.back(2) == [7.0, 8.0, 9.0], phase


def test_points_off_the_grid_are_not_a_step_late() -> None:
    """A source sampled at second 53 of each minute (a replayed trace): the tick at 53 s sees that
    minute's value, not the one before (a one-minute lag made every forecast a minute stale)."""
    base = int(T0.timestamp()) + 53

    async def fetch(start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        return [(datetime.fromtimestamp(base + 60 * i, UTC), float(i)) for i in range(10)
                if start.timestamp() <= base + 60 * i <= end.timestamp()]  # fmt: skip

    series = RecentSeries(60.0, 3)
    for i in range(5, 10):
        asyncio.run(series.update(fetch, datetime.fromtimestamp(base + 60 * i, UTC)))
        assert series.latest() == float(i) and series.back(2) == [i - 2.0, i - 1.0, float(i)], i
