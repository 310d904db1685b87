"""A backup's manifest: what it holds, written beside its artifact as `<artifact>.manifest.json`.

Why a manifest: a restore must be able to tell, before it touches anything, that the artifact is
complete and undamaged (size and sha256), which schema it carries, and what it should find
afterwards (the row count of every table at the snapshot). It is written after the artifact, so
an artifact without one is an interrupted backup. Plain data, shared by the CLI (`empire db
backup`), the scheduled backups (`empire.agent.backup`) and the state adapter that takes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from empire.errors import ConfigError

__all__ = ["DIALECTS", "MANIFEST_SUFFIX", "SUFFIX", "Manifest", "artifact_name"]

MANIFEST_SUFFIX = ".manifest.json"
SUFFIX = {"sqlite": ".sqlite3", "postgresql": ".pgdump"}  # the artifact's, by dialect
DIALECTS = tuple(SUFFIX)


def artifact_name(dialect: str, at: datetime, prefix: str = "empire") -> str:
    """`empire-20260301T120000Z.sqlite3`: sortable by time, one per second."""
    return f"{prefix}-{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}{SUFFIX[dialect]}"


@dataclass(frozen=True)
class Manifest:
    """What a backup holds, written beside its artifact as `<artifact>.manifest.json`."""

    name: str  # the artifact's file name
    dialect: str  # sqlite | postgresql
    format: str  # sqlite3 | pg_dump-custom
    created_at: datetime
    revision: str | None
    size: int
    checksum: str  # sha256:<hex> of the artifact
    rows: dict[str, int]  # per table, at the snapshot
    unfinished_intents: int
    seconds: float  # how long taking it took
    source: str = ""  # the database, password masked
    empire_version: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # e.g. {"class": "hourly"} for scheduled ones

    def to_json(self) -> str:
        body = asdict(self)
        body["created_at"] = self.created_at.isoformat()
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Manifest:
        """Parse a manifest; anything malformed is a `ConfigError` naming `where`."""
        try:
            body = json.loads(text)
            body["created_at"] = datetime.fromisoformat(body["created_at"]).astimezone(UTC)
            known = set(cls.__dataclass_fields__)
            manifest = cls(**{k: v for k, v in body.items() if k in known})
            if manifest.dialect not in DIALECTS or not str(manifest.checksum).startswith("sha256:"):
                raise ValueError(f"dialect {manifest.dialect!r}, checksum {str(manifest.checksum)[:20]!r}")
            if not isinstance(manifest.rows, dict) or not isinstance(manifest.size, int):
                raise ValueError("rows must be a mapping and size a number")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{where}: not an empire backup manifest ({str(exc)[:200]})") from None
        return manifest

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())
