"""`empire db backup` and `empire db restore`: the state database out to a file (or S3) and back.

A backup is taken online (the daemon keeps running; see `empire.state.backup` for how each
database gives a consistent snapshot). A restore refuses to run while a daemon holds the
leadership of the same deployment (it takes that leadership itself for the duration, so no
replica can start acting half-way), refuses a non-empty database unless `--force`, migrates the
restored schema to the newest revision and prints what it restored against the manifest.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empire.errors import ConfigError

if TYPE_CHECKING:
    from empire.state.backup import Manifest

__all__ = ["register"]


def register(psub: argparse._SubParsersAction) -> None:
    b = psub.add_parser(
        "backup",
        help="an online, consistent backup of the state database (artifact + manifest with checksum)",
        description="Back up the state database while the daemon runs: SQLite through its online backup API, "
        "PostgreSQL with pg_dump --format=custom (needs the PostgreSQL client programs). Writes the artifact, then "
        "<artifact>.manifest.json (time, schema revision, size, sha256, row counts, unfinished intents).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire db backup                                   # into <data dir>/backups/
  empire db backup --to /mnt/backups/                # a directory (created if missing)
  empire db backup --to /mnt/backups/before-upgrade.sqlite3
  AWS_ENDPOINT_URL=http://minio:9000 empire db backup --to s3://empire-backups/prod/""",
    )
    b.add_argument("--to", metavar="PATH_OR_URL", help="directory, file name, or s3://BUCKET/PREFIX/ "
                   "(default: <data dir>/backups/)")  # fmt: skip
    b.set_defaults(func=backup)
    r = psub.add_parser(
        "restore",
        help="restore a backup into an empty state database, migrate it, check it",
        description="Restore a backup made by 'empire db backup' (or the daemon's scheduled backups) into the "
        "database of EMPIRE_DATABASE_URL. The artifact is checked against its manifest first; the database must be "
        "empty unless --force; no daemon may be running on it (stop every replica). The schema is then migrated to "
        "the newest revision and the row counts compared with the manifest. Unfinished journal intents in the "
        "backup are read back (never re-applied) when the daemon next starts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire db restore ~/.local/share/empire/backups/empire-20260301T120000Z.sqlite3
  empire db restore s3://empire-backups/prod/daily/empire-20260301T000000Z.pgdump
  empire db restore FILE --force                     # replace a database that is not empty""",
    )
    r.add_argument("file", metavar="FILE_OR_URL", help="the artifact (or its .manifest.json)")
    r.add_argument("--force", action="store_true", help="replace a database that is not empty")
    r.set_defaults(func=restore)


def backup(args: argparse.Namespace) -> int:
    import anyio

    from empire.config.settings import load_settings
    from empire.state.backup import MANIFEST_SUFFIX, artifact_name, check_source, create_backup
    from empire.state.backupdest import LocalLocation, open_location, scratch_dir, split_artifact

    settings = load_settings()
    url = settings.database_url_value
    where, name = split_artifact(args.to or str(settings.data_dir / "backups") + "/")
    location = open_location(where)
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"

    async def go() -> tuple[str, Manifest]:
        now = datetime.now(UTC)
        artifact = name or artifact_name(dialect, now)
        await check_source(url)  # before any directory is made for it
        near = location.directory if isinstance(location, LocalLocation) else None
        with scratch_dir(near) as tmp:
            manifest = await create_backup(url, Path(tmp) / artifact, now)
            await location.put_file(artifact, Path(tmp) / artifact)
            await location.put_text(artifact + MANIFEST_SUFFIX, manifest.to_json())
        return location.describe(artifact), manifest

    shown, m = anyio.run(go)
    print(f"backup {shown}: {_size(m.size)}, {m.checksum[:19]}..., revision {m.revision or 'none'}, "
          f"{len(m.rows)} tables, {m.total_rows:,} rows, {m.unfinished_intents} unfinished intents, "
          f"{m.seconds:.2f} s")  # fmt: skip
    print(f"manifest {shown}{MANIFEST_SUFFIX}")
    return 0


def restore(args: argparse.Namespace) -> int:
    import anyio

    from empire.config.settings import load_settings
    from empire.config.urls import mask_url
    from empire.state.backup import MANIFEST_SUFFIX, Manifest, restore_backup
    from empire.state.backupdest import open_location, scratch_dir, split_artifact

    settings = load_settings()
    url = settings.database_url_value
    where, name = split_artifact(args.file)
    if name is None:
        raise ConfigError(f"{args.file[:120]}: name a backup file (empire-<time>.sqlite3 or .pgdump, or its "
                          f"{MANIFEST_SUFFIX})")  # fmt: skip
    location = open_location(where)

    async def go() -> tuple[Manifest, Any, list[str]]:
        manifest = Manifest.from_json(await location.get_text(name + MANIFEST_SUFFIX),
                                      location.describe(name + MANIFEST_SUFFIX))  # fmt: skip
        with scratch_dir() as tmp:
            artifact = await location.get_file(name, Path(tmp) / name)
            async with _SoleReplica(settings):
                before = await restore_backup(url, artifact, manifest, force=args.force)
                report = await _after_restore(url, manifest)
        return manifest, before, report

    manifest, before, report = anyio.run(go)
    if not before.empty:
        print(f"replaced what the database held: {before.describe()}")
    print(f"restored {location.describe(name)} (taken {manifest.created_at:%Y-%m-%d %H:%M:%SZ}, "
          f"revision {manifest.revision}) into {mask_url(url)}")  # fmt: skip
    for line in report:
        print(f"  {line}")
    failed = [line for line in report if line.startswith("FAIL")]
    print(f"restore: {'FAILED: ' + '; '.join(failed) if failed else 'ok'}")
    return 1 if failed else 0


class _SoleReplica:
    """Hold the deployment's leadership (the lock every replica competes for) during a restore:
    refused when a daemon holds it, and no daemon can start acting until the restore is done."""

    def __init__(self, settings: Any) -> None:
        from empire.agent.leader import leader_for

        self.leader = leader_for(settings)

    async def __aenter__(self) -> None:
        if not await self.leader.ensure():
            await self.leader.release()
            raise ConfigError(f"a daemon is running on this deployment ({self.leader.name} leadership is held: "
                              f"{self.leader.reason or 'unavailable'}): stop every replica, then restore")  # fmt: skip

    async def __aexit__(self, *exc: object) -> None:
        await self.leader.release()


async def _after_restore(url: str, manifest: Manifest) -> list[str]:
    """Migrate to the newest schema, then compare with the manifest: `ok ...` / `FAIL ...` lines."""
    from empire.state.backup import database_contents
    from empire.state.database import Database
    from empire.state.migrations import head_revision

    db = await Database.open(url, migrate=True)
    await db.close()
    found = await database_contents(url)
    lines = [f"ok    revision {found.revision}" + (f" (migrated from {manifest.revision})"
                                                    if found.revision != manifest.revision else "")]  # fmt: skip
    if found.revision != head_revision():
        lines[0] = f"FAIL  revision {found.revision}, the newest is {head_revision()}"
    differ = [f"{t} {found.rows.get(t, 0):,} (backup {n:,})" for t, n in sorted(manifest.rows.items())
              if found.rows.get(t, 0) != n]  # fmt: skip
    if differ:
        lines.append("FAIL  rows differ from the manifest: " + ", ".join(differ))
    else:
        lines.append(f"ok    rows as in the manifest: {manifest.total_rows:,} in {len(manifest.rows)} tables")
    n = manifest.unfinished_intents
    lines.append(f"ok    {n} unfinished journal intent(s): read back (never re-applied) when the daemon starts"
                 if n else "ok    no unfinished journal intents")  # fmt: skip
    return lines


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
