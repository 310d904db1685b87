"""`SimulatedAudience`: listeners and payouts for the tracks a simulation generated.

Why: the business loop (revenue per persona, ROI, spending by returns, tiering by access) reads
what the publishing platforms report through `POST /v1/content/access` and `/v1/content/revenue`.
A simulation has no platform, so every simulated hour this job reports for each stored track what a
platform would: its plays (access events) and their payout (revenue added), through the same
inventory calls the ingest endpoints make, so the status page's ROI, the tier sweep's access
scores and the `returns` spending strategy all see data.

The model is deliberately plain and seeded: plays per hour are Poisson with a mean of
`plays_per_hour` x the persona's appeal (a fixed draw in 0.25..2 per persona name, so personas
differ and a `returns` planner has something to learn) x 0.5^(age / `half_life`) (a track is
played most when new); each play pays `payout`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from empire.agent.tiering.inventory import AccessEvent, RevenueFigure
from empire.policies.schema import Policy

if TYPE_CHECKING:
    from collections.abc import Callable

    from empire.state.database import Database

__all__ = ["SimulatedAudience"]

logger = logging.getLogger(__name__)


def appeal(persona: str | None) -> float:
    """A persona's fixed popularity factor in 0.25..2 (from its name: the same in every run)."""
    h = int.from_bytes(hashlib.sha256((persona or "").encode()).digest()[:4], "big") / 2**32
    return 0.25 * 8**h


class SimulatedAudience:
    def __init__(self, db: Database, policy: Callable[[], Policy], *, seed: int = 0, plays_per_hour: float = 6.0,
                 payout: float = 0.004, half_life: timedelta = timedelta(days=7)) -> None:  # fmt: skip
        self.db, self.policy, self.seed = db, policy, seed
        self.plays_per_hour, self.payout, self.half_life = plays_per_hour, payout, half_life
        self.plays = 0
        self.revenue = 0.0

    async def __call__(self, now: datetime) -> None:
        from empire.state.inventory import SqlInventory

        inventory = SqlInventory(self.db)
        rng = random.Random(f"{self.seed}/{now.isoformat(timespec='hours')}")
        access: list[AccessEvent] = []
        revenue: list[RevenueFigure] = []
        for obj in await inventory.all(limit=10_000):
            if obj.status == "quarantined" or obj.created_at > now:
                continue
            age = max(0.0, (now - obj.created_at).total_seconds())
            mean = self.plays_per_hour * appeal(obj.persona) * 0.5 ** (age / self.half_life.total_seconds())
            plays = _poisson(rng, mean)
            if plays:
                access.append(AccessEvent(obj.id, now, plays))
                revenue.append(RevenueFigure(obj.id, round(plays * self.payout, 6), "add"))
        if not access:
            return
        pol = self.policy()
        await inventory.record_access(access, pol.storage.access_half_life, actor="simulation", at=now)
        await inventory.record_revenue(revenue, actor="simulation", at=now)
        self.plays += sum(e.count for e in access)
        self.revenue += sum(f.amount for f in revenue)
        logger.debug("simulated audience: %d plays of %d tracks", sum(e.count for e in access), len(access))


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal above 30 (plenty for play counts)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
