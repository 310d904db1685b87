"""`empire db upgrade|status|verify|backup|restore`: create or migrate the state database, show it,
check it; back it up and restore it (`empire.cli.dbbackup`).

Only `upgrade` and `restore` write. `status` and `verify` open the database read-only
(`Database.open_readonly`): a missing database is a one-line error (exit 2) saying to run
`empire db upgrade`, never a new empty file.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from empire.errors import ConfigError

if TYPE_CHECKING:
    from empire.state.database import Database
    from empire.state.verify import Check


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "db",
        help="create, migrate or check the state database",
        description="Manage the state database (EMPIRE_DATABASE_URL; default SQLite in EMPIRE_DATA_DIR).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire db upgrade                                              # embedded SQLite
  EMPIRE_DATABASE_URL=postgresql://empire:...@db/empire empire db upgrade
  empire db status                                               # revision; exit 1 when behind
  empire db verify                                               # integrity, schema, row counts; exit 1 on a problem""",
    )
    psub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    psub.required = True
    u = psub.add_parser("upgrade", help="create the database or migrate it to the newest schema (safe to repeat)")
    u.add_argument("--revision", default="head", help="target revision (default: head)")
    u.set_defaults(func=upgrade)
    s = psub.add_parser("status", help="print the database URL (password masked) and schema revision")
    s.set_defaults(func=status)
    v = psub.add_parser(
        "verify",
        help="check integrity (SQLite), schema revision, tables and row counts; read-only",
        description="Check the state database without changing it. SQLite: PRAGMA integrity_check and "
        "foreign_key_check. Both: the schema is at the newest revision with every table and column, and every "
        "table can be read (row counts). Exit 0 when all pass, 1 when one fails.",
    )
    v.add_argument("--quick", action="store_true", help="SQLite: PRAGMA quick_check instead of integrity_check")
    v.set_defaults(func=verify)

    from empire.cli import dbbackup

    dbbackup.register(psub)


def upgrade(args: argparse.Namespace) -> int:
    from empire.cli.common import with_database
    from empire.config.settings import load_settings
    from empire.config.urls import mask_url

    if not args.revision.strip():  # alembic asserts on an empty revision
        raise ConfigError("--revision: empty; give a revision id or 'head' (the default)")
    url = load_settings().database_url_value

    async def go(db: Database) -> str | None:
        from alembic.util import CommandError

        try:
            await db.upgrade(args.revision)
        except CommandError as exc:  # an unknown or ambiguous revision
            raise ConfigError(f"--revision {args.revision[:40]!r}: {str(exc)[:200]}") from None
        return await db.current_revision()

    rev = with_database(go, url=url, migrate=False)
    print(f"{mask_url(url)}: at revision {rev}")
    return 0


def status(args: argparse.Namespace) -> int:
    from empire.cli.common import with_database
    from empire.config.settings import load_settings
    from empire.config.urls import mask_url
    from empire.state.migrations import head_revision

    url = load_settings().database_url_value
    rev = with_database(lambda db: db.current_revision(), url=url, readonly=True, current=False)
    head = head_revision()
    state = "up to date" if rev == head else f"behind (newest is {head}; run 'empire db upgrade')"
    print(f"{mask_url(url)}: revision {rev or 'none'}, {state}")
    return 0 if rev == head else 1


def verify(args: argparse.Namespace) -> int:
    import anyio

    from empire.config.settings import load_settings
    from empire.errors import DbFailure, StateBroken
    from empire.state.database import Database
    from empire.state.verify import Check
    from empire.state.verify import verify as run_checks

    url = load_settings().database_url_value

    async def go() -> tuple[str, list[Check]]:
        try:
            db = await Database.open_readonly(url, current=False)
        except StateBroken as exc:
            if exc.reason != DbFailure.corrupt:
                raise
            return url, [Check("integrity", False, str(exc))]  # too damaged to open: that is the finding
        try:
            return db.describe(), await run_checks(db, quick=args.quick)
        finally:
            await db.close()

    where, checks = anyio.run(go)
    print(f"state database {where}")
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark = {True: "ok", False: "FAIL", None: ""}[c.ok]
        print(f"  {mark:<4}  {c.name:<{width}}  {c.detail}")
    failed = [c.name for c in checks if c.ok is False]
    print(f"verify: {'FAILED: ' + ', '.join(failed) if failed else 'ok'}")
    return 1 if failed else 0
