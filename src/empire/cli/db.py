"""`empire db upgrade|status|backup|restore`: create or migrate the state database; back it up and restore it
(`empire.cli.dbbackup`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from empire.errors import ConfigError

if TYPE_CHECKING:
    from empire.state.database import Database


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "db",
        help="create or migrate the state database",
        description="Manage the state database (EMPIRE_DATABASE_URL; default SQLite in EMPIRE_DATA_DIR).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire db upgrade                                              # embedded SQLite
  EMPIRE_DATABASE_URL=postgresql://empire:...@db/empire empire db upgrade""",
    )
    psub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    psub.required = True
    u = psub.add_parser("upgrade", help="migrate to the newest schema (safe to repeat)")
    u.add_argument("--revision", default="head", help="target revision (default: head)")
    u.set_defaults(func=upgrade)
    s = psub.add_parser("status", help="print the database URL (password masked) and schema revision")
    s.set_defaults(func=status)
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
    rev = with_database(lambda db: db.current_revision(), url=url, migrate=False)
    head = head_revision()
    state = "up to date" if rev == head else f"behind (newest is {head}; run 'empire db upgrade')"
    print(f"{mask_url(url)}: revision {rev or 'none'}, {state}")
    return 0 if rev == head else 1
