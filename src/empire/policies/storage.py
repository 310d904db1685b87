"""Storage tiers: where content lives, what each tier costs, when an object moves.

Tiers are ordered hot -> archive as listed. An object belongs in the coldest tier whose
`enter_when` rules it satisfies (the hottest tier when none match); it is promoted back when it is
accessed and its rules no longer hold, if `promote_on_access` is set. A move is planned only when
it pays for itself within `horizon` (see `empire.agent.tiering.planner`). Minimum days per tier mirror S3's minimum storage durations
(30 / 90 / 180 days), which are billed even when an object leaves early.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from empire.policies.common import Name, SecretRef, StrictModel, find_duplicates
from empire.policies.durations import ByteSize, Duration

__all__ = ["S3Backend", "StoragePolicy", "Tier", "TierRule"]


class TierRule(StrictModel):
    """Conditions (all must hold) for an object to enter a tier. Omitted conditions do not apply."""

    idle_days: float | None = Field(default=None, ge=0, description="days since the last access")
    min_age_days: float | None = Field(default=None, ge=0, description="days since creation")
    max_access_rate: float | None = Field(
        default=None, ge=0, description="decayed accesses per day must be at most this"
    )
    max_revenue: float | None = Field(
        default=None, ge=0, description="revenue to date must be at most this (high earners stay hot)"
    )


class Tier(StrictModel):
    name: Name
    storage_class: str | None = Field(default=None, description="S3 storage class for this tier")
    root: str | None = Field(default=None, description="local filesystem root (default: <data dir>/tiers/<name>)")
    cost_per_gb_month: float = Field(ge=0)
    retrieval_cost_per_gb: float = Field(default=0.0, ge=0, description="cost to read an object out")
    transition_cost_per_object: float = Field(default=0.0, ge=0, description="per-request charge of a move in")
    min_days: float = Field(default=0, ge=0, description="minimum billed days in this tier")
    enter_when: TierRule | None = Field(default=None, description="none for the hottest tier")


class S3Backend(StrictModel):
    """An S3-compatible bucket; each tier is a key prefix `<prefix><tier>/` with the tier's storage class."""

    bucket: str = Field(min_length=3, max_length=63)
    endpoint_url: str | None = Field(default=None, description="e.g. http://minio:9000; default: AWS")
    region: str = "us-east-1"
    prefix: str = Field(default="", description="key prefix before the tier name, e.g. content/")
    access_key_id: SecretRef | None = Field(default=None, description="default: the SDK's credential chain")
    secret_access_key: SecretRef | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"


def _default_tiers() -> tuple[Tier, ...]:
    return (
        Tier(name="hot", cost_per_gb_month=0.023),
        Tier(
            name="warm", cost_per_gb_month=0.0125, retrieval_cost_per_gb=0.01, min_days=30,
            transition_cost_per_object=0.00001, enter_when=TierRule(idle_days=30, max_access_rate=0.1),
        ),
        Tier(
            name="cold", cost_per_gb_month=0.004, retrieval_cost_per_gb=0.03, min_days=90,
            transition_cost_per_object=0.00002, enter_when=TierRule(idle_days=90, max_access_rate=0.02),
        ),
        Tier(
            name="archive", cost_per_gb_month=0.00099, retrieval_cost_per_gb=0.05, min_days=180,
            transition_cost_per_object=0.00005,
            enter_when=TierRule(idle_days=180, max_access_rate=0.005, max_revenue=1.0),
        ),
    )  # fmt: skip


class StoragePolicy(StrictModel):
    tiers: tuple[Tier, ...] = Field(default_factory=_default_tiers, min_length=1)
    min_object_size: ByteSize = Field(default=128 * 1024, description="smaller objects are never moved")
    promote_on_access: bool = True
    horizon: Duration = Field(default=timedelta(days=90), description="window a move must pay off in")
    access_half_life: Duration = Field(default=timedelta(days=7), description="decay of the access count")
    sweep_every: Duration = Field(default=timedelta(hours=1))
    max_concurrent_moves: int = Field(default=4, ge=1)
    max_bytes_per_second: ByteSize = Field(default=100 * 1024 * 1024)
    max_moves_per_sweep: int = Field(default=1000, ge=1, description="the best-paying moves first")
    backend: Literal["local", "s3"] = Field(default="local", description="local: one directory per tier")
    s3: S3Backend | None = Field(default=None, description="required when backend is s3")

    @model_validator(mode="after")
    def _checks(self) -> StoragePolicy:
        names = [t.name for t in self.tiers]
        if dups := find_duplicates(names):
            raise ValueError(f"tier names must be unique, repeated: {', '.join(dups)}")
        if self.tiers[0].enter_when is not None:
            raise ValueError(f"the first tier ({names[0]}) is the hottest: it takes no enter_when rule")
        for t in self.tiers[1:]:
            if t.enter_when is None:
                raise ValueError(f"tier {t.name!r} needs enter_when rules (only the first tier has none)")
        if self.backend == "s3" and self.s3 is None:
            raise ValueError("backend s3 needs an s3 section (bucket, endpoint_url, ...)")
        if self.s3 is not None and (self.s3.access_key_id is None) != (self.s3.secret_access_key is None):
            raise ValueError("s3: give both access_key_id and secret_access_key, or neither")
        return self

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)
