"""One `Monitor` for every metric the agent exports, on an injectable `CollectorRegistry`.

Each area (loop, pools, tiering, alerting) defines its metric group in its own module as a class
taking the registry; `Monitor.loop` and `Monitor.group(kind)` build each group on first use, so a process
registers only what it uses and tests read values with `registry.get_sample_value(...)` on a
fresh registry. Label values come from closed sets (target and provider names from the policy,
`Reason` members, fixed state names), never from free text, and never carry secrets.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from empire.agent.loop_metrics import LoopMetrics

G = TypeVar("G")

__all__ = ["Monitor"]


class Monitor:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._groups: dict[type, Any] = {}

    def group(self, kind: type[G]) -> G:
        """The metric group `kind(registry)` of an area, built on first use and then shared.

        Areas bring their own groups (`monitor.group(PoolMetrics)`), so this module imports none of them:
        the runtime layer stays below the areas (see `.importlinter`).
        """
        built = self._groups.get(kind)
        if built is None:
            built = self._groups[kind] = kind(self.registry)
        return built  # type: ignore[no-any-return]

    @cached_property
    def loop(self) -> LoopMetrics:
        from empire.agent.loop_metrics import LoopMetrics

        return LoopMetrics(self.registry)
