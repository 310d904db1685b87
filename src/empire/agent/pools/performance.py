"""What a published track did on each platform, day by day: views, engagement, revenue. PURE.

The operation's `performance_metrics` table: one row per (track, platform, period), the period
being the UTC day the platform's figure is for. Platforms revise their figures (yesterday's
revenue is often corrected today), so a figure *replaces* the row for its key instead of adding
to it: ingesting the same or a revised figure twice never double counts.

Whatever the source (the ingest endpoint `POST /v1/performance`, `empire content import-metrics`,
the periodic analytics pull), a batch is validated here (`figure_error`) and written all or
nothing; each write sets the tracks' revenue to date in the content inventory
(`content_objects.revenue`) to the sum of their figures, in the same transaction. That column
is what tiering keeps high earners warm by and what the `returns` spending strategy learns from,
so both see the platforms' figures without knowing where they came from.

`PerformanceStore` is the port: `empire.state.performance.SqlPerformanceStore` on the state DB,
`MemoryPerformanceStore` (pools/memory.py) the twin; tests/contract/test_performance_store.py
holds them to the same behaviour.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

__all__ = [
    "MAX_COUNT",
    "MAX_REVENUE",
    "PerformanceFigure",
    "PerformanceStore",
    "PlatformTotals",
    "figure_error",
    "parse_csv",
    "refuse_bad_figures",
]

MAX_REVENUE = 1e12  # per figure, as for the inventory's revenue
MAX_COUNT = 10**15  # views or engagement per figure
EARLIEST = date(2000, 1, 1)


@dataclass(frozen=True)
class PerformanceFigure:
    object_id: str
    platform: str
    period: date  # the UTC day the figure is for
    views: int = 0
    engagement: int = 0  # likes, comments, shares, saves: as the platform counts them
    revenue: float = 0.0  # earned on that day (not to date)


@dataclass(frozen=True)
class PlatformTotals:
    """Sums over a set of figures."""

    views: int = 0
    engagement: int = 0
    revenue: float = 0.0
    tracks: int = 0


class PerformanceStore(Protocol):
    async def record(self, figures: Sequence[PerformanceFigure], *, actor: str, at: datetime, source: str) -> int:
        """Upsert per (object, platform, period), all or nothing; within a batch the last figure
        for a key wins. Then each touched object's revenue to date becomes the sum of its figures.
        Unknown object ids: NotFoundError; an invalid figure: ConfigError (nothing written either
        way). Audited (action `content.performance`, with `source`). Returns the figures written."""
        ...

    async def figures(self, object_id: str) -> list[PerformanceFigure]:
        """The object's figures, by platform then period."""
        ...

    async def revenue(self, object_id: str) -> float:
        """The object's revenue to date as the inventory holds it."""
        ...

    async def totals(self, since: datetime) -> dict[tuple[str, str], PlatformTotals]:
        """(persona, platform) -> sums of the figures of tracks created at or after `since`."""
        ...


def figure_error(f: PerformanceFigure, today: date) -> str | None:
    """Why a figure must be refused, as "field: reason", or None (callers prefix where it came from)."""
    if not f.object_id or len(f.object_id) > 128:
        return "id: must be 1 to 128 characters"
    if not f.platform or len(f.platform) > 128:
        return "platform: must be 1 to 128 characters"
    if not EARLIEST <= f.period <= today:
        return f"period: {f.period.isoformat()} is not between {EARLIEST.isoformat()} and today ({today.isoformat()})"
    for name in ("views", "engagement"):
        v = getattr(f, name)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_COUNT:
            return f"{name}: must be a whole number from 0 to {MAX_COUNT}"
    if not isinstance(f.revenue, int | float) or not math.isfinite(f.revenue) or abs(f.revenue) > MAX_REVENUE:
        return f"revenue: must be a finite number of at most {MAX_REVENUE:,.0f} in size"
    return None


def refuse_bad_figures(figures: Sequence[PerformanceFigure], today: date) -> None:
    """The last guard of every store: `figure_error` has the final word."""
    from empire.errors import ConfigError

    for f in figures:
        if (why := figure_error(f, today)) is not None:
            raise ConfigError(f"{f.object_id}/{f.platform}/{f.period}: {why}")


CSV_COLUMNS = ("id", "platform", "date", "views", "engagement", "revenue")


def parse_csv(text: str, today: date, name: str = "metrics.csv") -> list[PerformanceFigure]:
    """`id,platform,date,views,engagement,revenue` (a header line; views, engagement default to 0).
    Raises ConfigError naming the file, line and field of the first bad row."""
    from empire.errors import ConfigError

    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("id", "platform", "date", "revenue") if c not in (reader.fieldnames or ())]
    if missing:
        raise ConfigError(f"{name}: missing column(s) {', '.join(missing)} (expected {','.join(CSV_COLUMNS)})")
    out: list[PerformanceFigure] = []
    for line, row in enumerate(reader, start=2):
        try:
            f = PerformanceFigure(
                object_id=(row["id"] or "").strip(), platform=(row["platform"] or "").strip(),
                period=date.fromisoformat((row["date"] or "").strip()),
                views=int((row.get("views") or "0").strip() or 0),
                engagement=int((row.get("engagement") or "0").strip() or 0),
                revenue=float((row["revenue"] or "").strip()),
            )  # fmt: skip
        except ValueError as exc:
            raise ConfigError(f"{name}:{line}: {exc}") from None
        if (why := figure_error(f, today)) is not None:
            raise ConfigError(f"{name}:{line}: {why}")
        out.append(f)
    return out
