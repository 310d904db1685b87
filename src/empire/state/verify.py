"""`empire db verify`, and the integrity check the daemon runs before it trusts a SQLite file.

What "verified" means, per database:

* SQLite: `PRAGMA integrity_check` (every page, index and constraint; `quick=True`: the
  O(pages) `quick_check`, which skips index-content cross-checks) and `PRAGMA foreign_key_check`;
* both: the schema revision is the newest this empire knows, every table and column of
  `empire.state.tables` is there (Alembic's comparison, as the migration contract test does), and
  every table can be counted; unfinished journal intents are counted (information: the next start
  reads each one back, applied or reconciled, and never re-applies it);
* PostgreSQL: page-level integrity is the server's job; counting reads every heap page, which
  with data checksums on (`SHOW data_checksums`, reported) raises on a damaged one.

A check that cannot run because the database is damaged is a failed check, not a crash: `verify`
reports what it found and `empire db verify` exits 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text

from empire.errors import DbFailure, EmpireError, StateBroken
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["Check", "check_sqlite_integrity", "verify"]

SHOWN_PROBLEMS = 5


def _detail(exc: BaseException) -> str:
    """What the driver said (the report names the database once, at the top)."""
    return getattr(exc, "detail", "") or str(exc)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: information only (row counts, settings)
    detail: str


async def _integrity(db: Database, quick: bool) -> Check:
    pragma = "quick_check" if quick else "integrity_check"
    try:
        async with db.connect() as conn:
            found = (await conn.execute(text(f"PRAGMA {pragma}"))).all()
        rows = [line for r in found for line in str(r[0]).splitlines() if not line.startswith("***")]
    except EmpireError as exc:
        return Check("integrity", False, f"PRAGMA {pragma}: {_detail(exc)}")
    if rows == ["ok"]:
        return Check("integrity", True, f"PRAGMA {pragma}: ok")
    more = f" (+{len(rows) - SHOWN_PROBLEMS} more)" if len(rows) > SHOWN_PROBLEMS else ""
    return Check("integrity", False, f"PRAGMA {pragma}: " + "; ".join(rows[:SHOWN_PROBLEMS]) + more)


async def check_sqlite_integrity(db: Database) -> float:
    """Refuse a corrupt SQLite file (`StateBroken(corrupt)`, naming `empire db verify`); return the
    seconds the check took. The daemon runs this at start: `quick_check` reads every page once
    (1.2 s for a 262 MB file: `benchmarks/integrity_check.py`), which is what it takes to find a
    damaged page before an action depends on it."""
    started = time.perf_counter()
    found = await _integrity(db, quick=True)
    if not found.ok:
        raise StateBroken(
            f"state database {db.describe()} is corrupt ({found.detail}); run 'empire db verify' for "
            "the details, then restore it from a backup", DbFailure.corrupt,
        )  # fmt: skip
    return time.perf_counter() - started


async def _foreign_keys(db: Database) -> Check:
    try:
        async with db.connect() as conn:
            rows = (await conn.execute(text("PRAGMA foreign_key_check"))).all()
    except EmpireError as exc:
        return Check("foreign keys", False, f"PRAGMA foreign_key_check: {_detail(exc)}")
    if not rows:
        return Check("foreign keys", True, "no row refers to a missing one")
    tables = sorted({str(r[0]) for r in rows})
    return Check("foreign keys", False, f"{len(rows)} rows refer to missing rows (in {', '.join(tables)})")


async def _revision(db: Database) -> Check:
    from empire.state.migrations import head_revision

    head = head_revision()
    try:
        rev = await db.current_revision()
    except EmpireError as exc:
        return Check("revision", False, f"cannot read the schema revision: {_detail(exc)}")
    if rev == head:
        return Check("revision", True, f"{rev} (the newest)")
    if rev is None:
        return Check("revision", False, f"no empire schema (newest is {head}): run 'empire db upgrade'")
    return Check("revision", False, f"{rev}, the newest is {head}: run 'empire db upgrade'")


async def _tables(db: Database) -> Check:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return compare_metadata(ctx, t.metadata)

    try:
        async with db.connect() as conn:
            found = await conn.run_sync(diff)
    except EmpireError as exc:
        return Check("tables", False, f"cannot read the schema: {_detail(exc)}")
    if not found:
        return Check("tables", True, f"{len(t.metadata.tables)} tables match the schema")
    shown = "; ".join(_describe_diff(d) for d in found[:SHOWN_PROBLEMS])
    return Check("tables", False, f"{len(found)} differences from the schema: {shown}")


def _describe_diff(d: Any) -> str:
    if isinstance(d, tuple) and d and isinstance(d[0], str):
        op, *rest = d
        named = [getattr(x, "name", None) for x in rest if getattr(x, "name", None)]
        return f"{op} {' '.join(str(n) for n in named)}".strip()
    if isinstance(d, list) and d:
        return _describe_diff(d[0])
    return str(d)


async def _row_counts(db: Database) -> Check:
    counts, failed = [], []
    for name, table in sorted(t.metadata.tables.items()):
        try:
            async with db.connect() as conn:
                n = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            counts.append(f"{name} {n:,}")
        except EmpireError as exc:
            failed.append(f"{name}: {_detail(exc)}")
    if failed:
        return Check("rows", False, "cannot count " + "; ".join(failed[:SHOWN_PROBLEMS]))
    return Check("rows", None, ", ".join(counts))


async def _intents(db: Database) -> Check:
    """Journal intents not settled: what a restore (or a crash) leaves for the next start, which
    reads each one back (applied or reconciled), never re-applies it. Information, not a failure."""
    try:
        async with db.connect() as conn:
            q = select(func.count()).select_from(t.actions).where(t.actions.c.state == "intent")
            n = (await conn.execute(q)).scalar_one()
    except EmpireError as exc:
        return Check("intents", False, f"cannot count the unfinished intents: {_detail(exc)}")
    if not n:
        return Check("intents", None, "none unfinished")
    return Check("intents", None, f"{n:,} unfinished: the next start reads them back, never re-applies them")


async def verify(db: Database, *, quick: bool = False) -> list[Check]:
    """Every check that applies to `db`'s dialect, in order; see the module docstring."""
    checks: list[Check] = []
    if db.dialect == "sqlite":
        checks.append(await _integrity(db, quick))
        if checks[-1].detail.endswith("file is not a database"):
            return checks  # nothing else can be read either
        checks.append(await _foreign_keys(db))
    else:
        async with db.connect() as conn:
            sums = (await conn.execute(text("SHOW data_checksums"))).scalar()
        checks.append(Check("data checksums", None, f"{sums} (counting the rows reads every page)"))
    checks.append(await _revision(db))
    checks.append(await _tables(db))
    checks.append(await _row_counts(db))
    checks.append(await _intents(db))
    return checks
