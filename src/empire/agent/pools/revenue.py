"""Published tracks and what they earned: the evidence the `returns` spending strategy learns from.

`RevenueSource` is the port (the content inventory: `content_objects`, whose `revenue` column the
ingest endpoint `POST /v1/content/revenue` and `empire content import` keep up to date, as revenue
to date: a platform's revised figure replaces the earlier one). `track_returns` (PURE) turns its
rows into the allocator's `TrackReturn`s and counts each persona's tracks in the floor period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from empire.agent.pools.allocating import TrackReturn
from empire.agent.pools.budget import BudgetLimits

__all__ = ["PublishedTrack", "RevenueSource", "track_returns"]


@dataclass(frozen=True)
class PublishedTrack:
    persona: str
    genre: str  # "" when unknown (a track added by hand): it counts for its persona only
    provider: str | None
    created_at: datetime
    revenue: float  # to date


class RevenueSource(Protocol):
    async def published_since(self, since: datetime, personas: Sequence[str]) -> list[PublishedTrack]:
        """The personas' active tracks created at or after `since`, with their revenue to date."""
        ...


def track_returns(
    tracks: Sequence[PublishedTrack],
    now: datetime,
    limits: BudgetLimits,
    provider_of: Mapping[str, str],
    floor_every: timedelta,
    today: datetime,
) -> tuple[list[TrackReturn], dict[str, int]]:
    """(returns, recent): a track costs its provider's estimate (else its persona's first
    provider's, from `provider_of`); `recent[persona]` counts tracks created in the floor period
    before `today` (today's are counted from the job queue)."""
    out: list[TrackReturn] = []
    recent: dict[str, int] = {}
    for t in tracks:
        cost = limits.estimate(t.provider) if t.provider else 0.0
        if cost <= 0:
            cost = limits.estimate(provider_of.get(t.persona, ""))
        out.append(TrackReturn(t.persona, t.genre, cost, max(0.0, (now - t.created_at) / timedelta(days=1)), t.revenue))
        if now - floor_every <= t.created_at < today:
            recent[t.persona] = recent.get(t.persona, 0) + 1
    return out, recent
