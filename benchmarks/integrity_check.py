"""Time the integrity check `empire run` does before it trusts a SQLite state database.

Builds a migrated database with `--rows` decision rows (the largest table in practice: one row per
target per tick, 14 days kept), then times `check_sqlite_integrity` (PRAGMA quick_check, what the
daemon runs at start) and `PRAGMA integrity_check` (what `empire db verify` runs), best of
`--repeats`, with the file in the page cache. Prints one JSON line with the file size and seconds.

    .venv/bin/python benchmarks/integrity_check.py [--rows N] [--repeats N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import anyio
from sqlalchemy import text

from empire.state.database import Database
from empire.state.verify import check_sqlite_integrity


def fill(path: Path, rows: int) -> None:
    con = sqlite3.connect(path)
    row = ("2026-03-01 12:00:00", 3, 4, 4, '["above_target"]', '{"window_value": 4, "signals": {"cpu": 0.7}}',
           "53c6eb4e6dbc", "replica-1", 0)  # fmt: skip
    con.executemany(
        "INSERT INTO decisions (target, at, current, recommended, desired, reasons, details, policy_version, "
        "replica, dry_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((f"target-{i % 50}", *row) for i in range(rows)),
    )
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


async def create(url: str) -> None:
    db = await Database.open(url)  # creates and migrates
    await db.close()


async def measure(url: str, repeats: int) -> dict[str, float]:
    db = await Database.open(url, migrate=False, create=False)
    try:
        quick, full = [], []
        for _ in range(repeats):
            quick.append(await check_sqlite_integrity(db))
            started = time.perf_counter()
            async with db.connect() as conn:
                (await conn.execute(text("PRAGMA integrity_check"))).all()
            full.append(time.perf_counter() - started)
        return {"quick_check_s": round(min(quick), 3), "integrity_check_s": round(min(full), 3)}
    finally:
        await db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_500_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, help="where to build the database (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "empire.db"
        url = f"sqlite+aiosqlite:///{path}"
        anyio.run(create, url)
        fill(path, args.rows)
        result = anyio.run(measure, url, args.repeats)
        size = path.stat().st_size
    print(json.dumps({"benchmark": "integrity_check", "rows": args.rows, "file_mb": round(size / 1e6, 1),
                      **result, "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}))  # fmt: skip


if __name__ == "__main__":
    main()
