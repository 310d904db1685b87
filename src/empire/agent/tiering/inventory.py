"""The content inventory (the tiering area's `Inventory` port): what exists, where it lives, how it is used and earns.

One row per content object (`content_objects`). Writes come from three places: the generation
pools (a finished track is registered in the hottest tier), access and revenue ingestion (CLI CSV
import, `empire content touch`, the HTTP endpoint), and the mover (which switches `tier` and
`location` in one transaction). Access counts decay exponentially with the policy's half-life, so
a track played a thousand times last year does not look busy today: a touch multiplies the stored
score by 2^(-elapsed/half-life) and adds the new accesses, and stamps `access_updated_at`.
Every ingestion write is recorded in the audit table in the same transaction.
`empire.state.inventory.SqlInventory` keeps it in the state DB (selecting moves in SQL);
`empire.agent.tiering.memory.MemoryInventory` is the in-process twin (moves by `planner.plan_object`),
so the sweep runs in a unit test; `tests/contract/test_inventory.py` runs one suite over all three.

Every ingestion path (CSV import, `touch`, HTTP) checks each event and figure with the one
function `ingest_error`, so the bounds below cannot differ between them: an access is no older
than 1970 and no more than 5 minutes ahead of the clock (skew), a count is 1..1,000,000, and a
revenue figure is finite and at most 1e12 in size, as is the total it leaves (`record_revenue`
refuses an addition that would pass it: floats overflow to inf, and inf can never be corrected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from empire.agent.tiering.planner import MoveSummary, ObjectView, PlannedMove
from empire.errors import ConfigError
from empire.policies.storage import StoragePolicy

__all__ = [
    "AccessEvent", "ContentObject", "Inventory", "RevenueFigure", "TierUsage", "decay_add", "ingest_error",
    "refuse_bad", "valid_checksum",
]  # fmt: skip

CHECKSUM_PREFIX = "sha256:"
EARLIEST_ACCESS = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)
MAX_ACCESS_COUNT = 1_000_000
MAX_REVENUE = 1e12  # per object; cents stay exact in a float far beyond it (2^53 / 100)


@dataclass(frozen=True)
class ContentObject:
    id: str
    size: int
    checksum: str
    tier: str
    location: str
    created_at: datetime
    tier_since: datetime
    status: str = "active"
    persona: str | None = None
    title: str | None = None
    last_access_at: datetime | None = None
    access_score: float = 0.0
    access_updated_at: datetime | None = None
    revenue: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def view(self) -> ObjectView:
        return ObjectView(
            id=self.id, size=self.size, tier=self.tier, created_at=self.created_at, tier_since=self.tier_since,
            last_access_at=self.last_access_at, access_score=self.access_score,
            access_updated_at=self.access_updated_at, revenue=self.revenue, status=self.status,
        )  # fmt: skip


@dataclass(frozen=True)
class AccessEvent:
    object_id: str
    at: datetime
    count: int = 1


@dataclass(frozen=True)
class RevenueFigure:
    object_id: str
    amount: float
    mode: str = "set"  # set: revenue to date; add: an increment


@dataclass(frozen=True)
class TierUsage:
    tier: str
    objects: int
    bytes: int
    moving: int
    quarantined: int


def ingest_error(item: AccessEvent | RevenueFigure, now: datetime) -> str | None:
    """Why an access event or revenue figure must be refused, as "field: reason", or None.

    Callers prefix where the item came from (`events.3.`, `plays.csv:12: `). `item.at` may be in
    any timezone: it is compared, never converted (year 1 at +01:00 has no UTC equivalent)."""
    if isinstance(item, AccessEvent):
        if item.at.tzinfo is None:
            return "at: needs a timezone (e.g. Z or +02:00)"
        if item.at < EARLIEST_ACCESS:
            return f"at: {item.at.isoformat()} is before {EARLIEST_ACCESS.date().isoformat()}"
        if item.at > now + CLOCK_SKEW:
            return f"at: {item.at.isoformat()} is in the future (more than {CLOCK_SKEW} ahead of {now.isoformat()})"
        if not 1 <= item.count <= MAX_ACCESS_COUNT:
            return f"count: must be 1..{MAX_ACCESS_COUNT:,}, got {item.count:,}"
        return None
    if not math.isfinite(item.amount) or abs(item.amount) > MAX_REVENUE:
        return f"amount: must be a finite number of at most {MAX_REVENUE:,.0f} in size"
    if item.mode not in ("set", "add"):
        return f"mode: must be set or add, got {item.mode!r}"
    if item.mode == "set" and item.amount < 0:
        return "amount: revenue to date cannot be negative (use mode 'add' for corrections)"
    return None


def refuse_bad(items: list[AccessEvent] | list[RevenueFigure], now: datetime) -> None:
    """The last guard: whatever path an item came by, `ingest_error` has the final word."""
    for item in items:
        if (why := ingest_error(item, now)) is not None:
            raise ConfigError(f"{item.object_id}: {why}")


def valid_checksum(value: str) -> bool:
    hexpart = value.removeprefix(CHECKSUM_PREFIX)
    return value.startswith(CHECKSUM_PREFIX) and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)


def decay_add(
    score: float, updated_at: datetime | None, at: datetime, count: int, half_life: timedelta
) -> tuple[float, datetime]:
    """Fold `count` accesses at `at` into a decayed score stamped `updated_at`. Late events (before
    the stamp) are decayed to the stamp instead of moving it back."""
    h = half_life.total_seconds()
    if updated_at is None:
        return float(count), at
    if at >= updated_at:
        return score * math.exp(-math.log(2) * (at - updated_at).total_seconds() / h) + count, at
    return score + count * math.exp(-math.log(2) * (updated_at - at).total_seconds() / h), updated_at


class Inventory(Protocol):
    async def register(self, obj: ContentObject, *, actor: str = "system") -> None:
        """Add an object; registering the same id again with the same checksum is a no-op (another
        checksum, or a malformed one: ConfigError)."""
        ...

    async def get(self, object_id: str) -> ContentObject:
        """NotFoundError when there is no such object."""
        ...

    async def missing(self, ids: set[str] | list[str]) -> list[str]:
        """The ids (sorted) that are not in the inventory."""
        ...

    async def all(self, limit: int = 10_000) -> list[ContentObject]:
        """By id."""
        ...

    async def page(self, after: str = "", limit: int = 1000) -> list[ContentObject]:
        """Objects in id order after `after`: every object, a page at a time (keyset pagination)."""
        ...

    async def sample(self, n: int) -> list[ContentObject]:
        """`n` objects chosen at random, in id order."""
        ...

    async def relocate(self, object_id: str, tier: str, at: datetime, *, actor: str, note: str) -> None:
        """Record that the object's bytes are in `tier` (same location key), active, audited: a
        verification found them there and not where the inventory said (an inventory restored from a
        backup taken before a move finished). `NotFoundError` for an unknown id."""
        ...

    async def set_status(self, object_id: str, status: str, at: datetime, *, actor: str, note: str = "") -> None: ...

    async def accept_checksum(self, object_id: str, checksum: str, at: datetime, *, actor: str) -> None:
        """Record the stored bytes as they are now (an intended change) and make the object active."""
        ...

    async def record_access(self, events: list[AccessEvent], half_life: timedelta, *, actor: str, at: datetime) -> int:
        """Fold access events into the decayed scores, all or nothing; how many objects. Unknown ids:
        NotFoundError; an event `ingest_error` refuses: ConfigError."""
        ...

    async def record_revenue(self, figures: list[RevenueFigure], *, actor: str, at: datetime) -> int:
        """Set (revenue to date) or add revenue, all or nothing. Unknown ids: NotFoundError; a total past
        MAX_REVENUE in size: ConfigError."""
        ...

    async def plan(self, policy: StoragePolicy, now: datetime, limit: int) -> list[PlannedMove]:
        """The moves that pay over the horizon (`planner.plan_object`), best monthly saving first, then id."""
        ...

    async def plan_summary(self, policy: StoragePolicy, now: datetime) -> list[MoveSummary]:
        """Every paying move grouped by (from tier, to tier), in that order."""
        ...

    async def usage(self) -> list[TierUsage]:
        """Objects, bytes, moving and quarantined objects per tier, by tier name."""
        ...
