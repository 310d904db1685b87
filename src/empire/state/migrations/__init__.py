"""Alembic migrations, run programmatically (no alembic.ini): `empire db upgrade` or `Database.open()`.

Add a revision: copy the newest file in `versions/`, set `down_revision` to its `revision`, write
`upgrade()`/`downgrade()`, and extend `empire/state/tables.py` to match; `tests/contract` checks
that the migrated database and `tables.py` agree and that there is a single head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ["alembic_config", "current_revision", "head_revision", "run_upgrade"]

HERE = Path(__file__).parent


def alembic_config(connection: Any | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def run_upgrade(sync_connection: Any, revision: str = "head") -> None:
    command.upgrade(alembic_config(sync_connection), revision)


def current_revision(sync_connection: Any) -> str | None:
    return MigrationContext.configure(sync_connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
