"""PostgreSQL's own client programs (pg_dump, pg_restore), found and run without leaking the password.

Why the server's tools and not a dump written here: `pg_dump --format=custom` is what PostgreSQL
users already trust and restore with; it copes with every type, sequence and constraint, and
`pg_restore` can restore it in one transaction. empire only finds the binaries, hands them the
connection, and classifies what they say.

Where the binaries come from: the Debian/Ubuntu `postgresql-client-N` packages put them in
`/usr/lib/postgresql/N/bin` (newest first, because a newer pg_dump reads an older server but not
the reverse), then `PATH`. None found is a `ConfigError` saying what to install.

The password travels in the child's environment (`PGPASSWORD`), never on its command line, where
any user of the machine could read it (`ps`). Other connection facts become libpq variables too.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import anyio
from sqlalchemy.engine import make_url

from empire.config.urls import mask_url
from empire.errors import ConfigError, PermanentError, TemporaryError

__all__ = ["find_tool", "libpq_env", "run_tool"]

_VERSIONED = re.compile(r"/usr/lib/postgresql/(\d+(?:\.\d+)?)/bin")
_UNREACHABLE = ("could not connect", "connection refused", "timeout expired", "server closed the connection",
                "could not translate host name", "the database system is starting up",
                "the database system is shutting down")  # fmt: skip


def find_tool(name: str, search: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)) -> Path:
    """The newest `name` (pg_dump, pg_restore) under the versioned directories, else on PATH."""
    found: list[tuple[float, Path]] = []
    for pattern in search:
        for d in Path("/").glob(pattern.lstrip("/")):
            m = _VERSIONED.search(str(d))
            if (d / name).is_file() and os.access(d / name, os.X_OK):
                found.append((float(m.group(1)) if m else 0.0, d / name))
    if found:
        return max(found)[1]
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise ConfigError(
        f"{name} not found (looked in /usr/lib/postgresql/*/bin and PATH): a PostgreSQL backup needs the "
        "PostgreSQL client programs of the server's major version or newer, e.g. 'apt-get install "
        "postgresql-client-16'. The container image does not ship them: run backups from a pod that has them "
        "(or use the operator's own backups, see the README's 'Backup and restore')"
    )


def libpq_env(url: str) -> dict[str, str]:
    """libpq environment variables for a SQLAlchemy/asyncpg URL (`PGHOST`, `PGPASSWORD`, ...)."""
    u = make_url(url)
    env = {"PGHOST": u.host or "localhost", "PGPORT": str(u.port or 5432), "PGDATABASE": u.database or "",
           "PGUSER": u.username or "", "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "empire-backup"}  # fmt: skip
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    for key, var in (("sslmode", "PGSSLMODE"), ("ssl", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT")):
        value = u.query.get(key)
        if isinstance(value, str):
            env[var] = {"true": "require", "false": "disable"}.get(value, value)
    return {k: v for k, v in env.items() if v}


async def run_tool(tool: Path, args: list[str], url: str) -> str:
    """Run a PostgreSQL client program against `url`; return its stderr (warnings). A connection
    failure is a `TemporaryError`, anything else it reports a `PermanentError` with its first lines
    (the URL masked). The caller bounds the time (`anyio.fail_after`): a dump takes as long as the
    database is large."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(libpq_env(url))
    done = await anyio.run_process([str(tool), *args], env=env, check=False)
    err = done.stderr.decode(errors="replace").strip()
    if done.returncode == 0:
        return err
    shown = "; ".join(line for line in err.splitlines()[:4] if line.strip()) or f"exit status {done.returncode}"
    shown = shown.replace(str(libpq_env(url).get("PGPASSWORD", "\0")), "***")
    where = mask_url(url)
    if "server version mismatch" in err or "aborting because of server version mismatch" in err:
        raise ConfigError(f"{tool} is older than the server of {where}: {shown}; install the client programs "
                          "of the server's major version (or newer)")  # fmt: skip
    if any(s in err.lower() for s in _UNREACHABLE):
        raise TemporaryError(f"{tool.name} could not reach {where}: {shown}")
    raise PermanentError(f"{tool.name} failed on {where}: {shown}")
