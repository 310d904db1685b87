"""One `Monitor` for every metric the agent exports, on an injectable `CollectorRegistry`.

Each area (loop, pools, tiering, alerting) defines its metric group in its own module as a class
taking the registry; `Monitor` exposes each group as a lazily built attribute, so a process
registers only what it uses and tests read values with `registry.get_sample_value(...)` on a
fresh registry. Label values come from closed sets (target and provider names from the policy,
`Reason` members, fixed state names), never from free text, and never carry secrets.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from empire.agent.alerting.metrics import AlertMetrics
    from empire.agent.metrics import LoopMetrics
    from empire.agent.pools.metrics import PoolMetrics
    from empire.agent.predictive import PredictiveMetrics
    from empire.agent.tiering.metrics import TieringMetrics

__all__ = ["Monitor"]


class Monitor:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)

    # Metric groups are added below as `functools.cached_property`s, one per area, e.g.:
    #
    #     @cached_property
    #     def pools(self) -> PoolMetrics:
    #         from empire.agent.pools.metrics import PoolMetrics
    #         return PoolMetrics(self.registry)

    @cached_property
    def loop(self) -> LoopMetrics:
        from empire.agent.metrics import LoopMetrics

        return LoopMetrics(self.registry)

    @cached_property
    def tiering(self) -> TieringMetrics:
        from empire.agent.tiering.metrics import TieringMetrics

        return TieringMetrics(self.registry)

    @cached_property
    def alerts(self) -> AlertMetrics:
        from empire.agent.alerting.metrics import AlertMetrics

        return AlertMetrics(self.registry)

    @cached_property
    def pools(self) -> PoolMetrics:
        from empire.agent.pools.metrics import PoolMetrics

        return PoolMetrics(self.registry)

    @cached_property
    def predictive(self) -> PredictiveMetrics:
        from empire.agent.predictive import PredictiveMetrics

        return PredictiveMetrics(self.registry)
