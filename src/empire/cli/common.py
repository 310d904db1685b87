"""What several command groups share: running a coroutine against the state database, and tables.

Commands that read or change state (`jobs`, `alerts`, `silence`, `explain`, `pools hold`, `db`)
open the database from the settings, run, and close it, so a connection never outlives the command
and an unreachable database is the same one-line, exit-3 error everywhere. `alerts` and `silence`
print their tables and times the same way (`print_table`, `utc_time`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import anyio

if TYPE_CHECKING:
    from empire.state import Database

__all__ = ["print_table", "utc_time", "with_database"]

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


def utc_time(dt: datetime | None) -> str:
    """`2026-03-01 18:00:00Z` (the stored UTC time), or `-` when there is none."""
    return dt.strftime("%Y-%m-%d %H:%M:%SZ") if dt else "-"


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows (the first is the header) in columns as wide as their widest cell, two spaces
    apart; the last column is left unpadded (free text: summaries, comments)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
