"""Tiering metrics (`monitor.group(TieringMetrics)`): what each tier holds and costs, and what the mover did.

Labels are closed sets: tier names come from the policy, `reason` from the `Reason` enum and
`result` from the fixed move outcomes; object ids never become labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["MOVE_RESULTS", "TieringMetrics"]

MOVE_RESULTS = ("done", "aborted", "skipped", "failed")


class TieringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tier_bytes = Gauge("empire_tier_bytes", "bytes stored per tier", ["tier"], registry=registry)
        self.tier_objects = Gauge("empire_tier_objects", "objects stored per tier", ["tier"], registry=registry)
        self.tier_monthly_cost = Gauge(
            "empire_tier_monthly_cost", "storage cost per month per tier (policy prices)", ["tier"], registry=registry
        )
        self.moves = Counter(
            "empire_tier_moves", "tier moves by result and reason", ["result", "reason"], registry=registry
        )
        self.bytes_moved = Counter(
            "empire_tier_moved_bytes", "bytes copied between tiers", ["from_tier", "to_tier"], registry=registry
        )
        self.planned_saving = Gauge(
            "empire_tier_planned_monthly_saving",
            "monthly saving of the moves the last sweep planned",
            registry=registry,
        )
        self.unfinished_moves = Gauge(
            "empire_tier_unfinished_moves", "moves journaled but not done or aborted", registry=registry
        )
