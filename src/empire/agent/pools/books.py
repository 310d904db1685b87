"""The business books as metrics: revenue and ROI per platform (and persona x platform), trend capture.

A periodic job of the pools area (`business-metrics`): reads the state DB's books over
`spending.lookback` through the callables the composition root hands it (`state.business`:
`platform_books`, `trend_capture`) and sets the pools' gauges, label sets bounded by the
policy (the personas' `platforms`). Reading is all it does: nothing to journal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from empire.agent.pools.metrics import PoolMetrics
from empire.policies.schema import Policy

__all__ = ["BusinessMetricsJob"]

Books = Callable[[datetime], Awaitable[dict[tuple[str, str], dict[str, float]]]]
Capture = Callable[[datetime], Awaitable[dict[str, dict[str, float]]]]


class BusinessMetricsJob:
    def __init__(self, policy: Callable[[], Policy], books: Books, capture: Capture, metrics: PoolMetrics) -> None:
        self.policy = policy
        self.books = books
        self.capture = capture
        self.metrics = metrics
        self.last: dict[str, Any] = {}

    async def __call__(self, now: datetime) -> dict[str, Any]:
        pol = self.policy()
        allowed = {(p.name, platform) for p in pol.personas for platform in p.platforms}
        if not allowed:
            return {"platforms": 0}
        since = now - pol.spending.lookback
        pairs, capture = await self.books(since), await self.capture(since)
        self.metrics.on_business(pairs, capture, allowed)
        self.last = {"platforms": len({p for _, p in allowed}), "trend_capture": capture}
        return self.last
