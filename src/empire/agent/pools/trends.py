"""Trend boosts: read each persona's trend metric from Prometheus, keep the factor for the planner.

The planner is pure and synchronous; reading metrics is I/O. So a periodic job (`TrendReader`,
every `trend.every` of the personas that have one) evaluates `query` and `baseline` through the
daemon's observer and keeps `trend_factor(current, baseline)` per persona; the planner reads the
cached factors (`factors()`). A failed or empty query keeps the persona at factor 1 (no boost:
missing data must never raise the spend) and is shown in `/status`. Without a Prometheus
observer (the embedded default) every factor is 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from empire.agent.pools.planner import trend_factor
from empire.errors import EmpireError
from empire.policies.schema import Policy

__all__ = ["TrendReader"]

logger = logging.getLogger(__name__)


class TrendReader:
    """`await reader(now)` refreshes the factors that are due; `factors()` is what the planner uses."""

    def __init__(
        self, observer: Any, policy: Callable[[], Policy], on_update: Callable[[dict[str, float]], None] | None = None
    ) -> None:
        self.observer = observer
        self.policy = policy
        self.on_update = on_update
        self._factors: dict[str, float] = {}
        self._read_at: dict[str, datetime] = {}
        self.errors: dict[str, str] = {}

    def factors(self, now: datetime | None = None) -> dict[str, float]:
        names = {p.name for p in self.policy().personas if p.trend is not None}
        return {k: v for k, v in self._factors.items() if k in names}

    async def __call__(self, now: datetime) -> dict[str, float]:
        query = getattr(self.observer, "query", None)
        for p in self.policy().personas:
            if p.trend is None:
                continue
            last = self._read_at.get(p.name)
            if last is not None and now - last < p.trend.every:
                continue
            self._read_at[p.name] = now
            if query is None:
                self._factors[p.name], self.errors[p.name] = 1.0, "no metric source: no trend boost"
                continue
            try:
                _, current = await query(p.trend.query, now)
                _, baseline = await query(p.trend.baseline, now)
            except (EmpireError, LookupError) as exc:
                self._factors[p.name], self.errors[p.name] = 1.0, f"{type(exc).__name__}: {exc}"
                logger.warning("trend of %s unavailable, no boost: %s", p.name, exc)
                continue
            factor = trend_factor(current, baseline)
            self.errors.pop(p.name, None)
            if factor != self._factors.get(p.name):
                logger.info("trend of %s: %.4g / %.4g -> boost x%.2f (cap x%.2f)", p.name, current, baseline,
                            factor, p.trend_boost_max)  # fmt: skip
            self._factors[p.name] = factor
        if self.on_update is not None:
            self.on_update(self.factors())
        return self.factors()

    def status(self) -> dict[str, Any]:
        return {"factors": self.factors(), "errors": dict(self.errors)}
