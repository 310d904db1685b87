"""Published tracks and what they earned: the evidence the `returns` spending strategy learns from.

`RevenueSource` is the port; the `ContentCatalog` (publish.py) is one: `content_objects`, whose
`revenue` column the ingest endpoint `POST /v1/content/revenue` and `empire content import` keep
up to date as revenue to date (a platform's revised figure replaces the earlier one);
`SqlContentCatalog` on the state DB, `MemoryContentCatalog` the twin. `track_returns` (PURE) turns its
rows into the allocator's `TrackReturn`s.
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
    tracks: Sequence[PublishedTrack], now: datetime, limits: BudgetLimits, provider_of: Mapping[str, str]
) -> list[TrackReturn]:
    """The allocator's evidence: a track costs its provider's estimate (else its persona's first
    provider's, from `provider_of`), its age in days."""
    out: list[TrackReturn] = []
    for t in tracks:
        cost = limits.estimate(t.provider) if t.provider else 0.0
        if cost <= 0:
            cost = limits.estimate(provider_of.get(t.persona, ""))
        out.append(TrackReturn(t.persona, t.genre, cost, max(0.0, (now - t.created_at) / timedelta(days=1)), t.revenue))
    return out
