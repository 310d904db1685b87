"""Storage tiers: where content lives, what each tier costs, when an object moves.

Tiers are ordered hot -> archive as listed. An object belongs in the coldest tier whose
`enter_when` rules it satisfies (the hottest tier when none match); it is promoted back when it is
accessed and its rules no longer hold, if `promote_on_access` is set. A move is planned only when
it pays for itself within `horizon` (see `empire.agent.tiering.planner`). Minimum days per tier mirror S3's minimum storage durations
(30 / 90 / 180 days), which are billed even when an object leaves early.

Tiers must be different places: a move copies, switches, then deletes the source, so two local
tiers in one directory (or one inside the other) would delete the only copy; the policy rejects
such roots. On s3 a tier is the key prefix `<prefix><tier>/`, and tier names are unique and hold
no '/', so s3 tiers never overlap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import PurePath
from typing import Literal

from pydantic import Field, model_validator

from empire.policies.common import Name, SecretRef, StrictModel, Url
from empire.policies.durations import ByteSize, Duration, PositiveDuration
from empire.policies.errors import Issue, duplicate_name_issues, raise_issues

__all__ = ["S3Backend", "StoragePolicy", "Tier", "TierRule", "overlapping_roots"]


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
    """One storage tier, with its prices and the rule for entering it."""

    name: Name
    storage_class: str | None = Field(default=None, description="S3 storage class for this tier")
    root: str | None = Field(default=None, description="local filesystem root (default: <data dir>/tiers/<name>)")
    cost_per_gb_month: float = Field(ge=0, description="storage price per GB and month")
    retrieval_cost_per_gb: float = Field(default=0.0, ge=0, description="cost to read an object out")
    transition_cost_per_object: float = Field(default=0.0, ge=0, description="per-request charge of a move in")
    min_days: float = Field(default=0, ge=0, description="minimum billed days in this tier")
    enter_when: TierRule | None = Field(default=None, description="none for the hottest tier")


class S3Backend(StrictModel):
    """An S3-compatible bucket; each tier is a key prefix `<prefix><tier>/` with the tier's storage class."""

    bucket: str = Field(min_length=3, max_length=63, description="bucket holding every tier")
    endpoint_url: Url | None = Field(default=None, description="e.g. http://minio:9000; default: AWS")
    region: str = Field(default="us-east-1", description="the bucket's region")
    prefix: str = Field(default="", description="key prefix before the tier name, e.g. content/")
    access_key_id: SecretRef | None = Field(default=None, description="default: the SDK's credential chain")
    secret_access_key: SecretRef | None = None
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="path for most S3-compatible servers (MinIO); virtual for AWS"
    )


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


_OVERLAP_CONSEQUENCE = (
    ": a move between them would delete the only copy, and each tier would list the other's objects; "
    "give every tier its own directory, none inside another"
)


def _forms(root: str | os.PathLike[str]) -> tuple[PurePath, PurePath]:
    """A root as normalised text (`a/./b/` -> `a/b`, as written: relative stays relative) and as
    resolved on this machine (absolute, symlinks followed), the way the agent will open it."""
    return PurePath(os.path.normpath(root)), PurePath(os.path.realpath(root))


def _relation(a: PurePath, b: PurePath) -> str | None:
    if a == b:
        return "same"
    if a in b.parents:
        return "contains"
    if b in a.parents:
        return "inside"
    return None


def overlapping_roots(roots: Mapping[str, str | os.PathLike[str]]) -> list[tuple[str, str, str]]:
    """Pairs of tiers whose directories are one place: `(first, second, why)`, `second` listed
    later, `why` like "root '/data/x/' is the same directory as the root '/data/x' of".

    Both the normalised and the resolved forms are compared, so `/data/x/../hot`, a trailing
    slash, a relative path and a symlink into another tier are all caught. Resolving reads the
    local filesystem: it is done where the policy is loaded, never in the decision core. Callers
    that know the default roots (`<data dir>/tiers/<name>`) pass them too.
    """
    items = [(name, str(root), _forms(root)) for name, root in roots.items()]
    words = {
        "same": "is the same directory as",
        "contains": "contains",
        "inside": "is inside",
    }
    out: list[tuple[str, str, str]] = []
    for j, (name_b, raw_b, forms_b) in enumerate(items):
        for name_a, raw_a, forms_a in items[:j]:
            found = None
            for fa, fb in zip(forms_a, forms_b, strict=True):
                if fa.is_absolute() != fb.is_absolute():
                    continue
                if (found := _relation(fb, fa)) is not None:
                    break
            if found is not None:
                resolved = str(forms_b[1])
                shown = f"{raw_b!r}" + (f" (resolves to {resolved})" if resolved != raw_b.rstrip("/") else "")
                out.append((name_a, name_b, f"root {shown} {words[found]} the root {raw_a!r} of"))
    return out


class StoragePolicy(StrictModel):
    """Storage tiers and when content moves between them."""

    tiers: tuple[Tier, ...] = Field(default_factory=_default_tiers, min_length=1, description="hottest first")
    min_object_size: ByteSize = Field(default=128 * 1024, description="smaller objects are never moved")
    promote_on_access: bool = Field(default=True, description="an access moves an object back to the hot tier")
    horizon: Duration = Field(default=timedelta(days=90), description="window a move must pay off in")
    access_half_life: PositiveDuration = Field(default=timedelta(days=7), description="decay of the access count")
    sweep_every: PositiveDuration = Field(default=timedelta(hours=1), description="time between tier sweeps")
    max_concurrent_moves: int = Field(default=4, ge=1, description="moves running at once")
    max_bytes_per_second: ByteSize = Field(default=100 * 1024 * 1024, description="copy bandwidth of all moves")
    max_moves_per_sweep: int = Field(default=1000, ge=1, description="the best-paying moves first")
    backend: Literal["local", "s3"] = Field(default="local", description="local: one directory per tier")
    s3: S3Backend | None = Field(default=None, description="required when backend is s3")

    @model_validator(mode="after")
    def _checks(self) -> StoragePolicy:
        names = [t.name for t in self.tiers]
        issues = duplicate_name_issues("tiers", names)
        if self.tiers[0].enter_when is not None:
            issues.append(
                Issue("tiers[0].enter_when", f"the first tier ({names[0]}) is the hottest: it takes no enter_when rule")
            )
        for i, t in enumerate(self.tiers[1:], start=1):
            if t.enter_when is None:
                issues.append(
                    Issue(f"tiers[{i}].enter_when", f"tier {t.name!r} needs rules (only the first tier has none)")
                )
        if self.backend == "local":
            index = {t.name: i for i, t in enumerate(self.tiers)}
            for a, b, why in overlapping_roots({t.name: t.root for t in self.tiers if t.root}):
                issues.append(Issue(f"tiers[{index[b]}].root", f"tier {b!r} {why} tier {a!r}{_OVERLAP_CONSEQUENCE}"))
        if self.backend == "s3" and self.s3 is None:
            issues.append(Issue("s3", "required when backend is s3 (bucket, endpoint_url, ...)"))
        if self.s3 is not None and (self.s3.access_key_id is None) != (self.s3.secret_access_key is None):
            absent = "access_key_id" if self.s3.access_key_id is None else "secret_access_key"
            issues.append(Issue(f"s3.{absent}", "give both access_key_id and secret_access_key, or neither"))
        if issues:
            raise_issues(issues)
        return self

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)
