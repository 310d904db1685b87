"""What several command groups share: running a coroutine against the state database.

Commands that read or change state (`jobs`, `alerts`, `silence`, `explain`, `pools hold`, `db`) open the
database from the settings, run, and close it, so a connection never outlives the command and an
unreachable database is the same one-line, exit-3 error everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

if TYPE_CHECKING:
    from empire.state import Database

__all__ = ["with_database"]

T = TypeVar("T")


def with_database(fn: Callable[[Database], Awaitable[T]], *, url: str | None = None, migrate: bool = True) -> T:
    """`fn(db)` on the database of the settings (or `url`), migrated to the newest schema unless
    `migrate` is False (`empire db` inspects or migrates it itself)."""
    from empire.config import load_settings
    from empire.state import Database

    target = url or load_settings().database_url_value

    async def go() -> T:
        db = await Database.open(target, migrate=migrate)
        try:
            return await fn(db)
        finally:
            await db.close()

    return anyio.run(go)
