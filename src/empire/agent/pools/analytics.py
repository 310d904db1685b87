"""The periodic pull of each platform's analytics into `performance_metrics` (job `analytics-pull`).

A platform is a provider with `analytics` in the policy (`providers[].analytics`): simulated ones
report seeded figures, http ones are asked through the generic HTTP provider (URL template and
field mapping in the policy). Every `analytics.every`, for each of the platform's succeeded
publish jobs (`pub/<object_id>/<platform>`) finished within `analytics.window`, the platform is
asked for the publication's daily figures with the account that published it, and they are
written through the `PerformanceStore` (source `pull`, actor `pull:<platform>`, audited): a day
already there is replaced by the platform's current figure for it, so a revision corrects it and
pulling twice counts nothing twice.

Errors are per publication: a temporary one (429, 5xx, timeout) or a bad answer skips it until
the next pull and is counted; one publication's figures are one write, so a track deleted since
does not hold the others back. The last pull's summary is in `/status` (`pools.analytics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from empire.agent.pools.jobs import JobState
from empire.agent.pools.performance import PerformanceFigure, PerformanceStore, figure_error
from empire.agent.pools.publish import PUBLISH_PREFIX
from empire.agent.pools.queue import JobQueue
from empire.errors import EmpireError
from empire.policies.schema import Policy

__all__ = ["AnalyticsPull", "pull_every"]

logger = logging.getLogger(__name__)

MAX_PUBLICATIONS = 10_000  # per platform and pull
RECENT_DAYS = 7  # the days asked for per publication: platforms revise recent days, older ones are settled


def pull_every(policy: Policy) -> timedelta:
    """The job's tick: the shortest `analytics.every` (each platform keeps its own period)."""
    return min((p.analytics.every for p in policy.providers if p.analytics is not None), default=timedelta(hours=6))


def _figure(object_id: str, platform: str, item: Mapping[str, Any]) -> PerformanceFigure | None:
    try:
        return PerformanceFigure(object_id, platform, date.fromisoformat(str(item.get("date"))[:10]),
                                 int(item.get("views") or 0), int(item.get("engagement") or 0),
                                 float(item.get("revenue") or 0.0))  # fmt: skip
    except (TypeError, ValueError):
        return None


class AnalyticsPull:
    def __init__(
        self,
        policy: Callable[[], Policy],
        queue: JobQueue,
        store: PerformanceStore,
        adapters: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.policy = policy
        self.queue = queue
        self.store = store
        self.adapters = adapters  # provider name -> its adapter (the dispatcher's)
        self.pulled_at: dict[str, datetime] = {}
        self.last: dict[str, Any] = {}

    async def __call__(self, now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.policy().providers:
            spec = p.analytics
            if spec is None or now - self.pulled_at.get(p.name, datetime.min.replace(tzinfo=now.tzinfo)) < spec.every:
                continue
            adapter = self.adapters().get(p.name)
            if adapter is None or not hasattr(adapter, "analytics"):
                out[p.name] = {"error": "no adapter"}
                continue
            out[p.name] = await self._pull(p.name, spec, adapter, now)
            self.pulled_at[p.name] = now
        if out:
            self.last = {"at": now.isoformat(), "platforms": out}
        return out

    async def _pull(self, platform: str, spec: Any, adapter: Any, now: datetime) -> dict[str, int]:
        jobs = await self.queue.list(state=JobState.succeeded.value, provider=platform, limit=MAX_PUBLICATIONS)
        today = now.date()
        stats = {"publications": 0, "figures": 0, "errors": 0}
        for job in jobs:
            oid = str(job.request.get("object_id") or "")
            if not job.idempotency_key.startswith(PUBLISH_PREFIX) or not oid or job.finished_at is None:
                continue
            if job.finished_at < now - spec.window:
                continue
            first = max(job.finished_at.date(), today - timedelta(days=RECENT_DAYS))
            days = [first + timedelta(days=n) for n in range((today - first).days + 1)]
            fields = {
                "external_id": job.provider_job_id or "",
                "object_id": oid,
                "idempotency_key": job.idempotency_key,
            }
            try:
                items = await adapter.analytics(job.account or "", fields, spec, days)
            except EmpireError as exc:
                stats["errors"] += 1
                logger.warning("analytics of %s on %s: %s", oid, platform, exc)
                continue
            figures = [f for i in items if (f := _figure(oid, platform, i)) is not None
                       and figure_error(f, today) is None]  # fmt: skip
            if not figures:
                continue
            try:
                stats["figures"] += await self.store.record(figures, actor=f"pull:{platform}", at=now, source="pull")
                stats["publications"] += 1
            except EmpireError as exc:  # e.g. the track was deleted since
                stats["errors"] += 1
                logger.warning("analytics of %s on %s not recorded: %s", oid, platform, exc)
        logger.info("analytics pull %s: %d publications, %d figures, %d errors", platform, stats["publications"],
                    stats["figures"], stats["errors"])  # fmt: skip
        return stats
