"""`NoSource`: the observer used when no metric source is configured.

Why not simply skip observing: the loop's safety rules are the ones that must hold when data is
absent (hold, then the configured fallback), and the cleanest way to exercise exactly those rules
is an observer that always reports the source unavailable, with a message saying what to set.
"""

from __future__ import annotations

from datetime import datetime

from empire.agent.types import Sample
from empire.errors import TemporaryError
from empire.policies.scaling import Target

__all__ = ["NoSource"]


class NoSource:
    message = "no metric source configured (set EMPIRE_PROMETHEUS__URL)"
    source = "none"  # the `source` label of empire_metric_source_up

    async def observe(self, target: Target, now: datetime) -> tuple[Sample, ...]:
        raise TemporaryError(self.message)

    async def history(self, query: str, start: datetime, end: datetime, step: float) -> list[tuple[datetime, float]]:
        raise TemporaryError(self.message)

    async def aclose(self) -> None:
        return None
