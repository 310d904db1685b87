"""Storage backends behind the `StorageBackend` port (empire.agent.ports): local directories, S3."""

from __future__ import annotations

from pathlib import Path

from empire.agent.tiering.backends.base import location_for
from empire.agent.tiering.backends.local import LocalBackend
from empire.errors import ConfigError
from empire.policies.storage import StoragePolicy, overlapping_roots

__all__ = ["LocalBackend", "build_backend", "location_for", "tier_roots"]


def tier_roots(policy: StoragePolicy, data_dir: Path) -> dict[str, Path]:
    """Each tier's directory: its `root`, or `<data_dir>/tiers/<tier>`. The policy checks explicit
    roots against each other; here the defaults are known too, so a root that lands on (or in, or
    around) another tier's default directory is refused: a move between them would delete the
    only copy."""
    roots = {t.name: Path(t.root) if t.root else data_dir / "tiers" / t.name for t in policy.tiers}
    clashes = overlapping_roots(roots)
    if clashes:
        first, second, why = clashes[0]
        raise ConfigError(f"storage.tiers: tier {second!r} {why} tier {first!r}: each tier needs its own directory")
    return roots


def build_backend(policy: StoragePolicy, data_dir: Path, secrets=None):  # -> StorageBackend
    """The backend the policy names (S3 imports boto3 lazily: it is an optional dependency).
    `secrets` reads Kubernetes Secret references in the S3 credentials (`empire.config.secrets`)."""
    if policy.backend == "s3":
        from empire.agent.tiering.backends.s3 import S3Backend

        return S3Backend.from_policy(policy, secrets)
    return LocalBackend(tier_roots(policy, data_dir))
