"""Storage tiering: planning time over 1,000,000 inventory rows, and move throughput versus `cp`.

Why: the issue claims (1) the candidate selection runs in SQL and stays fast at the inventory's
real size, on the embedded SQLite and on PostgreSQL, and (2) crash-safe moves (copy, fsync,
verify by re-reading, switch, delete) cost little next to a plain `cp` of the same files on the
same disk. Both are measured in one run and printed as one JSON line.

Planning: rows are generated inside the database (recursive CTE on SQLite, generate_series on
PostgreSQL) with a mix of tiers, ages, access counts and revenue drawn from a multiplicative hash
of the row number, so both databases hold the same inventory and must plan the same moves; then the sweep's two
queries run: the top `max_moves_per_sweep` (1000) moves, and the per-direction summary over all of
them. The best of `--repeat` runs is reported with the first. PostgreSQL needs
EMPIRE_TEST_POSTGRES_URL (scripts/with-services.sh sets it); without it that half is skipped with
a note.

Moves: `--files` files of `--file-mib` MiB are written to the hot tier; `cp -r` copies the same
directory (then `sync`, timed separately), and the mover moves every file hot -> cold (then back,
alternating with `cp`, `--repeat` rounds; best of each) with the policy's concurrency and an
unlimited budget. Ratio = mover seconds / cp seconds.

Usage: python benchmarks/tiering.py [--rows 1000000] [--files 32] [--file-mib 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sqlalchemy import text

from empire.agent.clock import SystemClock
from empire.agent.tiering.backends import LocalBackend
from empire.agent.tiering.inventory import ContentObject
from empire.agent.tiering.mover import Mover
from empire.agent.tiering.planner import PlannedMove
from empire.agent.types import Reason
from empire.policies.storage import StoragePolicy
from empire.state.database import Database
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal

NOW = datetime(2026, 6, 1, tzinfo=UTC)
COLUMNS = ("id, size, checksum, tier, location, persona, title, status, created_at, tier_since, last_access_at, "
           "access_score, access_updated_at, revenue, meta")  # fmt: skip

SQLITE_FILL = f"""
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :n - 1),
h AS (SELECT i, (i * 2654435761) % 4294967296 AS h FROM s),
r AS (SELECT i, (h / 100000) % 700 AS age, h % 1000 AS u, (h / 1000) % 100 AS v FROM h),
d AS (SELECT i, u, v, age, age * (v / 100.0) AS since_days, age * ((u % 97) / 97.0) AS idle_days FROM r)
INSERT INTO content_objects ({COLUMNS})
SELECT printf('obj-%07d', i), 50000 + (u * 97 + v * 7919) * 37, 'sha256:' || printf('%064d', i),
       CASE WHEN u < 550 THEN 'hot' WHEN u < 800 THEN 'warm' WHEN u < 930 THEN 'cold' ELSE 'archive' END,
       printf('%02x/obj-%07d', i % 256, i), 'persona-' || (i % 40), NULL, 'active',
       strftime('%Y-%m-%d %H:%M:%S', :now, '-' || age || ' days') || '.000000',
       strftime('%Y-%m-%d %H:%M:%S', :now, '-' || since_days || ' days') || '.000000',
       CASE WHEN u % 10 < 7 THEN strftime('%Y-%m-%d %H:%M:%S', :now, '-' || idle_days || ' days') || '.000000' END,
       CASE WHEN u % 10 < 7 THEN (v * v) / 50.0 ELSE 0 END,
       CASE WHEN u % 10 < 7 THEN strftime('%Y-%m-%d %H:%M:%S', :now, '-' || idle_days || ' days') || '.000000' END,
       CASE WHEN v < 60 THEN 0 ELSE (v - 60) * 1.5 END, '{{}}'
FROM d
"""

PG_FILL = f"""
INSERT INTO content_objects ({COLUMNS})
SELECT 'obj-' || lpad(i::text, 7, '0'), 50000 + (u * 97 + v * 7919) * 37, 'sha256:' || lpad(i::text, 64, '0'),
       CASE WHEN u < 550 THEN 'hot' WHEN u < 800 THEN 'warm' WHEN u < 930 THEN 'cold' ELSE 'archive' END,
       lpad(to_hex(i % 256), 2, '0') || '/obj-' || lpad(i::text, 7, '0'), 'persona-' || (i % 40), NULL, 'active',
       CAST(:now AS timestamptz) - age * interval '1 day',
       CAST(:now AS timestamptz) - age * (v / 100.0) * interval '1 day',
       CASE WHEN u % 10 < 7 THEN CAST(:now AS timestamptz) - age * ((u % 97) / 97.0) * interval '1 day' END,
       CASE WHEN u % 10 < 7 THEN (v * v) / 50.0 ELSE 0 END,
       CASE WHEN u % 10 < 7 THEN CAST(:now AS timestamptz) - age * ((u % 97) / 97.0) * interval '1 day' END,
       CASE WHEN v < 60 THEN 0 ELSE (v - 60) * 1.5 END, '{{}}'::jsonb
FROM (SELECT i, (h / 100000) % 700 AS age, h % 1000 AS u, (h / 1000) % 100 AS v
      FROM (SELECT i, (i::bigint * 2654435761) % 4294967296 AS h FROM generate_series(0, :n - 1) AS i) AS g) AS r
"""


async def bench_planning(url: str, rows: int, repeat: int) -> dict[str, Any]:
    db = await Database.open(url)
    try:
        t0 = time.perf_counter()
        async with db.begin() as conn:
            if db.dialect == "sqlite":
                await conn.execute(text(SQLITE_FILL), {"n": rows, "now": NOW.strftime("%Y-%m-%d %H:%M:%S")})
            else:
                await conn.execute(text(PG_FILL), {"n": rows, "now": NOW})
        if db.dialect == "postgresql":
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM ANALYZE content_objects")
                )
        fill_s = time.perf_counter() - t0
        inv = SqlInventory(db)
        policy = StoragePolicy()
        plan_s, summary_s = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            moves = await inv.plan(policy, NOW, policy.max_moves_per_sweep)
            plan_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            summary = await inv.plan_summary(policy, NOW)
            summary_s.append(time.perf_counter() - t0)
        return {
            "rows": rows, "fill_s": round(fill_s, 2),
            "plan_top1000_s": round(min(plan_s), 3), "plan_top1000_first_s": round(plan_s[0], 3),
            "summary_all_s": round(min(summary_s), 3), "summary_all_first_s": round(summary_s[0], 3),
            "planned_moves_total": sum(s.objects for s in summary), "returned": len(moves),
            "monthly_saving_total": round(sum(s.monthly_saving for s in summary), 2),
        }  # fmt: skip
    finally:
        await db.close()


def time_cp(src: Path, dst: Path) -> tuple[float, float]:
    """Seconds for `cp -r src dst`, and for the same followed by `sync` (cp itself never fsyncs)."""
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    cp_s = time.perf_counter() - t0
    subprocess.run(["sync"], check=True)
    cp_sync_s = time.perf_counter() - t0
    shutil.rmtree(dst)
    subprocess.run(["sync"], check=True)
    return cp_s, cp_sync_s


async def bench_moves(base: Path, files: int, file_mib: int, repeat: int) -> dict[str, Any]:
    roots = {t: base / "tiers" / t for t in ("hot", "warm", "cold", "archive")}
    backend = LocalBackend(roots)
    db = await Database.open(f"sqlite+aiosqlite:///{base / 'moves.db'}")
    try:
        inv = SqlInventory(db)
        size = file_mib * 1024 * 1024
        for i in range(files):
            data = os.urandom(size)
            oid = f"track-{i:04d}"
            loc = backend.location_for(oid)
            path = backend.path("hot", loc)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            await inv.register(ContentObject(id=oid, size=size, checksum="sha256:" + hashlib.sha256(data).hexdigest(),
                                             tier="hot", location=loc, created_at=NOW, tier_since=NOW))  # fmt: skip
        policy = StoragePolicy(max_bytes_per_second="1TiB")
        mover = Mover(SqlMoveJournal(db), backend, policy, SystemClock())
        cp_runs, sync_runs, move_runs = [], [], []
        src, dst = "hot", "cold"
        for _ in range(repeat):  # alternate cp and a full move (hot -> cold, then back): best of each
            cp_s, cp_sync_s = time_cp(roots[src], base / "cp-copy")
            cp_runs.append(cp_s)
            sync_runs.append(cp_sync_s)
            plan = [PlannedMove(f"track-{i:04d}", size, src, dst, Reason.idle_demotion, 0, 0, 0) for i in range(files)]
            t0 = time.perf_counter()
            results = await mover.apply(plan)
            move_runs.append(time.perf_counter() - t0)
            assert all(r.status == "done" for r in results), [r.error for r in results if r.status != "done"]
            src, dst = dst, src
        cp_s, cp_sync_s, move_s = min(cp_runs), min(sync_runs), min(move_runs)
        total_mib = files * file_mib
        return {
            "files": files, "file_mib": file_mib, "concurrency": policy.max_concurrent_moves,
            "cp_s": round(cp_s, 3), "cp_then_sync_s": round(cp_sync_s, 3), "move_s": round(move_s, 3),
            "cp_mib_s": round(total_mib / cp_s, 1), "move_mib_s": round(total_mib / move_s, 1),
            "ratio_move_vs_cp": round(move_s / cp_s, 2), "ratio_move_vs_cp_sync": round(move_s / cp_sync_s, 2),
        }  # fmt: skip
    finally:
        await db.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=32)
    ap.add_argument("--file-mib", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out: dict[str, Any] = {"benchmark": "tiering"}
    with tempfile.TemporaryDirectory(prefix="empire-bench-tiering-") as tmp:
        base = Path(tmp)
        pg = os.environ.get("EMPIRE_TEST_POSTGRES_URL")
        if args.rows <= 0:
            out["planning"] = {"skipped": "--rows 0"}
        else:
            sqlite_url = f"sqlite+aiosqlite:///{base / 'plan.db'}"
            out["planning_sqlite"] = await bench_planning(sqlite_url, args.rows, args.repeat)
            if pg:
                out["planning_postgresql"] = await bench_planning_pg(pg, args.rows, args.repeat)
                keys = ("planned_moves_total", "monthly_saving_total")
                out["same_plan_on_both"] = all(out["planning_sqlite"][k] == out["planning_postgresql"][k] for k in keys)
            else:
                out["planning_postgresql"] = {
                    "skipped": "EMPIRE_TEST_POSTGRES_URL unset (scripts/with-services.sh sets it)"
                }
        out["moves_local_disk"] = await bench_moves(base, args.files, args.file_mib, args.repeat)
    print(json.dumps(out))


async def bench_planning_pg(admin_url: str, rows: int, repeat: int) -> dict[str, Any]:
    """Run in a throwaway database on the test server."""
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        return await bench_planning(f"{base}/{name}", rows, repeat)
    finally:
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
