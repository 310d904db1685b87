"""Moves on a real database and real files: the happy path, bad sources, a full disk, the
bytes/s budget, bounded concurrency, and kill -9 at every step followed by recovery."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from empire.agent.clock import FakeClock
from empire.agent.tiering.backends import LocalBackend
from empire.agent.tiering.inventory import ContentObject, Inventory
from empire.agent.tiering.metrics import TieringMetrics
from empire.agent.tiering.mover import FAULT_POINTS, Mover
from empire.agent.types import Reason
from empire.policies.storage import StoragePolicy
from empire.state import tables as t
from empire.state.database import Database
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal

pytestmark = pytest.mark.anyio

TIERS = ("hot", "warm", "cold", "archive")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def roots(base: Path) -> dict[str, Path]:
    return {name: base / name for name in TIERS}


def partials(base: Path) -> list[Path]:
    return list(base.rglob("*.partial"))


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def add(inv: Inventory, backend: LocalBackend, oid: str, data: bytes) -> None:
    loc = backend.location_for(oid)
    backend.path("hot", loc).parent.mkdir(parents=True, exist_ok=True)
    backend.path("hot", loc).write_bytes(data)
    await inv.register(ContentObject(id=oid, size=len(data), checksum=digest(data), tier="hot", location=loc,
                                     created_at=NOW - timedelta(days=400), tier_since=NOW - timedelta(days=400)))  # fmt: skip


async def where_is(backend: LocalBackend, location: str) -> list[str]:
    return [tier for tier in TIERS if location in await backend.list(tier)]


async def move_steps(db: Database) -> list[tuple[str, str, str | None]]:
    async with db.connect() as conn:
        rows = (await conn.execute(select(t.moves).order_by(t.moves.c.id))).all()
    return [(r.object_id, r.step, r.error) for r in rows]


@pytest.fixture
def env(database: Database, tmp_path: Path):
    backend = LocalBackend(roots(tmp_path), chunk_size=64 * 1024)
    registry = CollectorRegistry()
    metrics = TieringMetrics(registry)
    mover = Mover(SqlMoveJournal(database), backend, StoragePolicy(), FakeClock(NOW), metrics=metrics)
    return SqlInventory(database), backend, mover, registry


async def test_a_move_copies_verifies_switches_and_deletes(env, database: Database) -> None:
    inv, backend, mover, registry = env
    data = os.urandom(300_000)
    await add(inv, backend, "track-1", data)
    result = await mover.move("track-1", "cold", Reason.idle_demotion)
    assert (result.status, result.bytes, result.error) == ("done", len(data), None)
    obj = await inv.get("track-1")
    assert (obj.tier, obj.status, obj.tier_since) == ("cold", "active", NOW)
    assert await where_is(backend, obj.location) == ["cold"]
    assert await backend.checksum("cold", obj.location) == digest(data)
    assert await move_steps(database) == [("track-1", "done", None)]
    assert registry.get_sample_value("empire_tier_moves_total", {"result": "done", "reason": "idle_demotion"}) == 1
    assert registry.get_sample_value("empire_tier_moved_bytes_total", {"from_tier": "hot", "to_tier": "cold"}) == len(
        data
    )
    again = await mover.move("track-1", "cold")
    assert again.status == "skipped" and "already in cold" in (again.error or "")
    stale = await mover.move("track-1", "warm", from_tier="hot")
    assert stale.status == "skipped" and "moved since it was planned" in (stale.error or "")


async def test_a_source_changed_before_the_move_aborts_and_quarantines(env, database: Database) -> None:
    inv, backend, mover, _ = env
    await add(inv, backend, "track-1", b"a" * 200_000)
    path = backend.path("hot", backend.location_for("track-1"))
    path.write_bytes(b"b" * 200_000)  # re-rendered or bit-rotted behind the inventory's back
    result = await mover.move("track-1", "archive", Reason.idle_demotion)
    assert result.status == "aborted"
    assert "source changed or corrupted before the move" in (result.error or "")
    obj = await inv.get("track-1")
    assert (obj.tier, obj.status) == ("hot", "quarantined")
    assert await where_is(backend, obj.location) == ["hot"]
    assert path.read_bytes() == b"b" * 200_000  # nothing destroyed: an operator decides
    assert (await move_steps(database))[0][1] == "aborted"
    assert (await mover.move("track-1", "cold")).status == "skipped"  # quarantined objects stay put


class FullDisk(LocalBackend):
    """The target tier's disk fills up half-way through the copy (ENOSPC from write)."""

    def __init__(self, *args, full_tier: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.full_root = self.roots[full_tier]

    def _write_durably(self, dst: Path, fill: Callable[[int], None]) -> None:
        if not dst.is_relative_to(self.full_root):
            return super()._write_durably(dst, fill)

        def failing(fd: int) -> None:
            os.write(fd, b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")

        return super()._write_durably(dst, failing)


async def test_a_full_target_disk_aborts_and_the_source_stays(database: Database, tmp_path: Path) -> None:
    backend = FullDisk(roots(tmp_path), full_tier="cold")
    inv = SqlInventory(database)
    mover = Mover(SqlMoveJournal(database), backend, StoragePolicy(), FakeClock(NOW))
    data = os.urandom(100_000)
    await add(inv, backend, "track-1", data)
    result = await mover.move("track-1", "cold", Reason.idle_demotion)
    assert result.status == "aborted" and "no space left on device" in (result.error or "")
    obj = await inv.get("track-1")
    assert (obj.tier, obj.status) == ("hot", "active")
    assert await backend.checksum("hot", obj.location) == digest(data)
    assert list((tmp_path / "cold").rglob("*")) == [] or all(p.is_dir() for p in (tmp_path / "cold").rglob("*"))
    assert (await mover.move("track-1", "warm")).status == "done"  # other tiers still work


async def test_moves_respect_the_bytes_per_second_budget(database: Database, tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    backend = LocalBackend(roots(tmp_path), chunk_size=256 * 1024)
    inv = SqlInventory(database)
    policy = StoragePolicy(max_bytes_per_second="1MiB")
    mover = Mover(SqlMoveJournal(database), backend, policy, clock)
    for i in range(3):
        await add(inv, backend, f"t{i}", os.urandom(2 * 1024 * 1024))
    from empire.agent.tiering.planner import PlannedMove

    plan = [PlannedMove(f"t{i}", 2 * 1024 * 1024, "hot", "warm", Reason.idle_demotion, 1.0, 3.0, 0.1) for i in range(3)]
    results = await mover.apply(plan)
    assert [r.status for r in results] == ["done"] * 3
    elapsed = (clock.now() - NOW).total_seconds()
    assert 5.0 <= elapsed <= 6.5  # 6 MiB at 1 MiB/s with a 1 MiB burst


async def test_concurrency_is_bounded(database: Database, tmp_path: Path) -> None:
    in_flight, peak = 0, 0

    class Slow(LocalBackend):
        async def copy(self, *args, **kwargs):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await anyio.sleep(0.02)
                return await super().copy(*args, **kwargs)
            finally:
                in_flight -= 1

    backend = Slow(roots(tmp_path))
    inv = SqlInventory(database)
    mover = Mover(SqlMoveJournal(database), backend, StoragePolicy(max_concurrent_moves=2), FakeClock(NOW))
    from empire.agent.tiering.planner import PlannedMove

    for i in range(6):
        await add(inv, backend, f"t{i}", os.urandom(1000))
    results = await mover.apply(
        [PlannedMove(f"t{i}", 1000, "hot", "cold", Reason.idle_demotion, 1, 1, 0) for i in range(6)]
    )
    assert [r.status for r in results] == ["done"] * 6
    assert peak == 2


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import anyio
    from empire.agent.clock import SystemClock
    from empire.agent.tiering.backends import LocalBackend
    from empire.agent.tiering.mover import Mover
    from empire.state.moves import SqlMoveJournal
    from empire.agent.types import Reason
    from empire.policies.storage import StoragePolicy
    from empire.state.database import Database

    url, base, point, *ids = sys.argv[1:]

    def fault(p):
        if p == point:
            os.kill(os.getpid(), signal.SIGKILL)

    async def main():
        db = await Database.open(url)
        roots = {t: os.path.join(base, t) for t in ("hot", "warm", "cold", "archive")}
        mover = Mover(SqlMoveJournal(db), LocalBackend(roots, chunk_size=64 * 1024), StoragePolicy(), SystemClock(), fault=fault)
        for oid in ids:
            await mover.move(oid, "cold", Reason.idle_demotion)
        await db.close()

    anyio.run(main)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("point", FAULT_POINTS)
async def test_kill_9_at_every_step_then_recovery_leaves_each_object_in_exactly_one_tier(
    point: str, database: Database, database_url: str, tmp_path: Path
) -> None:
    backend = LocalBackend(roots(tmp_path), chunk_size=64 * 1024)
    inv = SqlInventory(database)
    blobs = {"big": os.urandom(400_000), "small": os.urandom(70_000)}
    for oid, data in blobs.items():
        await add(inv, backend, oid, data)
    proc = await anyio.run_process(
        [sys.executable, "-c", CHILD, database_url, str(tmp_path), point, *blobs], check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]

    registry = CollectorRegistry()
    mover = Mover(SqlMoveJournal(database), backend, StoragePolicy(), FakeClock(NOW), metrics=TieringMetrics(registry))
    recovered = await mover.recover()
    expected_tier = "hot" if point in ("planned", "copying", "copy_done") else "cold"
    assert [(r.object_id, r.recovered) for r in recovered] == ([] if point == "done" else [("big", True)])
    assert await mover.recover() == []  # idempotent
    for oid, data in blobs.items():
        obj = await inv.get(oid)
        assert obj.status == "active"
        assert await where_is(backend, obj.location) == [obj.tier]
        assert await backend.checksum(obj.tier, obj.location) == digest(data)
    assert (await inv.get("big")).tier == expected_tier
    assert (await inv.get("small")).tier == "hot"  # never started
    assert partials(tmp_path) == []
    assert all(step in ("done", "aborted") for _, step, _ in await move_steps(database))
    assert registry.get_sample_value("empire_tier_unfinished_moves") == 0
    # and the agent carries on: the next move of the same object works
    nxt = await mover.move("small", "cold", Reason.idle_demotion)
    assert nxt.status == "done"
