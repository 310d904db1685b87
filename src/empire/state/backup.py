"""Online backups of the state database, and restores into an empty one, with the database's own tools.

What a backup is: one *artifact* (a SQLite database file, or a `pg_dump --format=custom` archive)
and its *manifest* (`empire.agent.backup.manifest.Manifest`): when it was taken, the schema
revision, the artifact's size and sha256, the row count of every table at the instant of the
snapshot, and how many journal intents were unfinished then.

How it stays consistent while the daemon writes:

* SQLite: the online backup API (`sqlite3.Connection.backup`, all pages in one step, so one read
  transaction: a snapshot) from a read-only connection, never a copy of the live file (which can
  catch a page half-written or miss what is still in the `-wal` file). WAL mode lets it read
  while the daemon writes. The row counts are read from the copy, so they are the snapshot's.
* PostgreSQL: `pg_dump --format=custom --snapshot=<id>`, where the snapshot is exported by a
  REPEATABLE READ transaction that also counts the rows: dump and counts see the same instant.

Restore (`restore_backup`) goes into an *empty* database: no row in any empire table and no table
that is not empire's (someone else's database). `force` replaces a non-empty one. Then the schema
is migrated to the newest revision (a backup from an older empire), and the daemon's next start
reads back every intent that was unfinished, as after a crash: nothing is re-applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from empire.agent.backup.manifest import MANIFEST_SUFFIX, Manifest, artifact_name
from empire.config.urls import mask_url
from empire.errors import ConfigError, PermanentError, TemporaryError

__all__ = [
    "MANIFEST_SUFFIX",
    "Contents",
    "Manifest",
    "artifact_name",
    "check_source",
    "create_backup",
    "database_contents",
    "file_checksum",
    "restore_backup",
    "sqlite_file",
]

FORMAT = {"sqlite": "sqlite3", "postgresql": "pg_dump-custom"}
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Contents:
    """What a database holds now: rows per empire table, and tables that are not empire's."""

    rows: dict[str, int]
    foreign: tuple[str, ...]
    revision: str | None

    @property
    def empty(self) -> bool:
        return not self.foreign and not any(self.rows.values())

    def describe(self) -> str:
        parts = [f"{n} {c:,}" for n, c in sorted(self.rows.items()) if c]
        if self.foreign:
            parts.append("tables that are not empire's: " + ", ".join(self.foreign[:5]))
        return ", ".join(parts) or "empty"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or None for PostgreSQL (and for in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def file_checksum(path: Path) -> tuple[int, str]:
    """(size, "sha256:<hex>") of a file, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, "sha256:" + digest.hexdigest()


def _empire_tables() -> list[str]:
    from empire.state import tables as t

    return sorted(t.metadata.tables)


def _dialect(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise ConfigError(f"database {mask_url(url)}: backups support SQLite and PostgreSQL only")


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_stats(conn: sqlite3.Connection) -> Contents:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    rows = {n: int(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in _empire_tables() if n in names}
    foreign = tuple(sorted(n for n in names - set(rows) if n != "alembic_version" and not n.startswith("sqlite_")))
    revision = None
    if "alembic_version" in names:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    return Contents(rows, foreign, revision)


def _unfinished(conn_or_rows: Any) -> int:
    row = conn_or_rows.execute("SELECT count(*) FROM actions WHERE state = 'intent'").fetchone()
    return int(row[0])


def _sqlite_backup(source: Path, out: Path) -> tuple[Contents, int]:
    if not source.exists():
        raise ConfigError(f"no state database at {source}: nothing to back up")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)  # pages=-1: every page in one step, i.e. one read transaction
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file (the daemon turns WAL back on)
            found = dst.execute("PRAGMA quick_check").fetchone()[0]
            if found != "ok":
                raise PermanentError(f"the copy of {source} fails its integrity check: {found}")
            contents = _sqlite_stats(dst)
            unfinished = _unfinished(dst) if "actions" in contents.rows else 0
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise _sqlite_error(exc, source) from None
    finally:
        src.close()
    return contents, unfinished


def _sqlite_error(exc: sqlite3.Error, path: Path) -> Exception:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return TemporaryError(f"state database {path} is locked: {text}")
    if "disk" in text and "full" in text:
        return TemporaryError(f"{path}: {text}")
    return PermanentError(f"state database {path}: {text}")


def _sqlite_contents(path: Path) -> Contents:
    if not path.exists():
        return Contents({}, (), None)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return _sqlite_stats(conn)
    except sqlite3.Error as exc:
        raise _sqlite_error(exc, path) from None
    finally:
        conn.close()


def _sqlite_restore(artifact: Path, target: Path) -> None:
    """Copy beside the target, check the copy, then rename it into place (atomic). Stale `-wal`
    and `-shm` files of the old database go first: SQLite would replay them into the new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.restore-{os.getpid()}")
    try:
        shutil.copyfile(artifact, partial)
        os.chmod(partial, 0o600)
        conn = sqlite3.connect(partial)
        try:
            found = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
        if found != "ok":
            raise PermanentError(f"backup {artifact} is not a sound SQLite database: {found}")
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        for suffix in ("-wal", "-shm", "-journal"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        os.replace(partial, target)
        dirfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except sqlite3.Error as exc:
        raise PermanentError(f"backup {artifact} is not a SQLite database: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot restore into {target}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)


# -- PostgreSQL ---------------------------------------------------------------------------------


def _asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_connect(url: str) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(_asyncpg_url(url), timeout=10)
    except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
        raise TemporaryError(f"database {mask_url(url)} unreachable: {exc}") from None
    except asyncpg.PostgresError as exc:
        raise PermanentError(f"database {mask_url(url)}: {exc}") from None


async def _pg_stats(conn: Any) -> Contents:
    names = {r[0] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}  # fmt: skip
    rows = {}
    for n in _empire_tables():
        if n in names:
            rows[n] = int(await conn.fetchval(f'SELECT count(*) FROM "{n}"'))
    foreign = tuple(sorted(n for n in names - set(rows) if n != "alembic_version"))
    revision = await conn.fetchval("SELECT version_num FROM alembic_version") if "alembic_version" in names else None
    return Contents(rows, foreign, revision)


async def _pg_backup(url: str, out: Path) -> tuple[Contents, int]:
    from empire.state.pgtools import find_tool, run_tool

    pg_dump = find_tool("pg_dump")
    conn = await _pg_connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            contents = await _pg_stats(conn)
            unfinished = _count(await conn.fetchval("SELECT count(*) FROM actions WHERE state = 'intent'")) \
                if "actions" in contents.rows else 0  # fmt: skip
            # the dump reads the same snapshot, so it holds exactly what was counted
            await run_tool(pg_dump, ["--format=custom", f"--snapshot={snapshot}", "--no-owner", "--no-privileges",
                                     f"--file={out}"], url)  # fmt: skip
    finally:
        await conn.close()
    return contents, unfinished


def _count(value: Any) -> int:
    return int(value or 0)


async def _pg_contents(url: str) -> Contents:
    conn = await _pg_connect(url)
    try:
        return await _pg_stats(conn)
    finally:
        await conn.close()


async def _pg_restore(url: str, artifact: Path, clean: bool) -> None:
    from empire.state.pgtools import find_tool, run_tool

    args = ["--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges"]
    if clean:
        args += ["--clean", "--if-exists"]
    await run_tool(find_tool("pg_restore"), [*args, f"--dbname={_asyncpg_url(url).split('?')[0]}", str(artifact)],
                   url)  # fmt: skip


# -- the operations -----------------------------------------------------------------------------


async def database_contents(url: str) -> Contents:
    """Rows per empire table, other tables, and the schema revision (a missing SQLite file: empty)."""
    if _dialect(url) == "sqlite":
        path = sqlite_file(url)
        if path is None:
            raise ConfigError(f"database {mask_url(url)}: an in-memory database has nothing to back up or restore")
        return await anyio.to_thread.run_sync(_sqlite_contents, path)
    return await _pg_contents(url)


async def check_source(url: str) -> None:
    """Refuse, before anything is written, a database there is nothing to back up from (a SQLite
    file that does not exist; an unreachable PostgreSQL is the TemporaryError of connecting)."""
    if _dialect(url) == "sqlite":
        path = sqlite_file(url)
        if path is None or not path.is_file():
            raise ConfigError(f"no state database at {path or mask_url(url)}: nothing to back up")
    else:
        await _pg_contents(url)


async def create_backup(url: str, out: Path, now: datetime, *, labels: dict[str, str] | None = None) -> Manifest:
    """Take an online, consistent backup of the database at `url` into the file `out` (written as
    a partial file, renamed when complete, mode 0600) and return its manifest (not written: the
    caller stores it beside the artifact, last)."""
    from empire import __version__

    dialect = _dialect(url)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        if dialect == "sqlite":
            source = sqlite_file(url)
            if source is None:
                raise ConfigError(f"database {mask_url(url)}: an in-memory database cannot be backed up")
            contents, unfinished = await anyio.to_thread.run_sync(_sqlite_backup, source, partial)
        else:
            partial.touch(mode=0o600)
            contents, unfinished = await _pg_backup(url, partial)
        os.chmod(partial, 0o600)
        size, checksum = await anyio.to_thread.run_sync(file_checksum, partial)
        os.replace(partial, out)
    except OSError as exc:
        raise TemporaryError(f"cannot write the backup {out}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return Manifest(
        name=out.name, dialect=dialect, format=FORMAT[dialect], created_at=now, revision=contents.revision,
        size=size, checksum=checksum, rows=contents.rows, unfinished_intents=unfinished,
        seconds=round(time.perf_counter() - started, 3), source=mask_url(url), empire_version=__version__,
        labels=dict(labels or {}),
    )  # fmt: skip


def check_revision(manifest: Manifest) -> None:
    """Refuse a backup whose schema this empire does not know (taken by a newer version)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from empire.state.migrations import alembic_config

    if manifest.revision is None:
        return
    try:
        known = ScriptDirectory.from_config(alembic_config()).get_revision(manifest.revision)
    except CommandError:
        known = None
    if known is None:
        raise ConfigError(
            f"backup {manifest.name} has schema revision {manifest.revision!r}, which this empire does not know "
            f"(it was taken by empire {manifest.empire_version or 'unknown'}): restore it with that version or newer"
        )


async def restore_backup(url: str, artifact: Path, manifest: Manifest, *, force: bool = False) -> Contents:
    """Restore `artifact` into the database at `url`; return what the database held before.

    Checks first, changes nothing until they pass: the artifact's size and checksum match the
    manifest, the backup's dialect is the database's, its schema revision is known here, and the
    database is empty (or `force`). The caller makes sure no daemon is running on the database."""
    dialect = _dialect(url)
    if manifest.dialect != dialect:
        raise ConfigError(f"backup {manifest.name} is a {manifest.dialect} backup; the database "
                          f"{mask_url(url)} is {dialect}: restore it into a {manifest.dialect} database")  # fmt: skip
    check_revision(manifest)
    size, checksum = await anyio.to_thread.run_sync(file_checksum, artifact)
    if (size, checksum) != (manifest.size, manifest.checksum):
        raise PermanentError(
            f"backup {artifact} does not match its manifest (size {size:,} vs {manifest.size:,}, "
            f"{checksum[:23]}... vs {manifest.checksum[:23]}...): it is damaged or incomplete; use another backup"
        )
    before = await database_contents(url)
    if not before.empty and not force:
        raise ConfigError(
            f"the database {mask_url(url)} is not empty ({before.describe()}): a restore would replace it. "
            "Restore into an empty database, or pass --force to replace this one"
        )
    if dialect == "sqlite":
        target = sqlite_file(url)
        assert target is not None
        await anyio.to_thread.run_sync(_sqlite_restore, artifact, target)
    else:
        await _pg_restore(url, artifact, clean=bool(before.rows or before.foreign or before.revision))
    return before
