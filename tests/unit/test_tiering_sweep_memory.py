"""The tiering sweep without a database: inventory and move journal on their in-memory twins, a fake
clock and a local backend in a temp dir (tests/integration/test_tiering_sweep.py runs the same on
SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.agent.tiering.backends.local import LocalBackend
from empire.agent.tiering.executor import RetierExecutor
from empire.agent.tiering.inventory import ContentObject
from empire.agent.tiering.memory import MemoryInventory, MemoryMoveJournal
from empire.agent.tiering.mover import Mover
from empire.agent.tiering.sweep import TieringSweep
from empire.agent.types import Retier
from empire.policies.storage import StoragePolicy
from empire.state.memory import MemoryStateStore

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 1, tzinfo=UTC)
MB = 1024 * 1024


async def test_the_sweep_moves_what_pays_on_the_twins(tmp_path: Path) -> None:
    clock, monitor = FakeClock(NOW), Monitor(CollectorRegistry())
    backend = LocalBackend({t: tmp_path / t for t in ("hot", "warm", "cold", "archive")})
    inv, policy = MemoryInventory(), StoragePolicy()
    for oid, size, idle in (("old-big", 3 * MB, 200), ("quiet", 2 * MB, 45), ("fresh", 2 * MB, 2)):
        data = os.urandom(size)
        loc = backend.location_for(oid)
        backend.path("hot", loc).parent.mkdir(parents=True, exist_ok=True)
        backend.path("hot", loc).write_bytes(data)
        at = NOW - timedelta(days=idle)
        await inv.register(ContentObject(id=oid, size=size, checksum="sha256:" + hashlib.sha256(data).hexdigest(),
                                         tier="hot", location=loc, created_at=at, tier_since=at))  # fmt: skip
    mover = Mover(MemoryMoveJournal(inv), backend, policy, clock)
    runner = ActionRunner(MemoryStateStore(), {Retier: RetierExecutor(mover, inv)}, clock, monitor, replica="r1")
    sweep = TieringSweep(inv, mover, lambda a, now: runner.run(a, at=now), lambda: policy)

    report = await sweep(clock.now())
    assert (report.planned, report.results) == (2, {"applied": 2})
    tiers = {o.id: o.tier for o in await inv.all()}
    assert tiers == {"old-big": "archive", "quiet": "warm", "fresh": "hot"}
    assert backend.path("archive", backend.location_for("old-big")).stat().st_size == 3 * MB
    assert not backend.path("hot", backend.location_for("old-big")).exists()  # the source is gone
    assert (await sweep(clock.now())).planned == 0  # nothing left that pays
