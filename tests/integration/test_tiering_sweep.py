"""The tiering sweep through the real journaling ActionRunner and periodic-job registry."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.agent.records import ActionState
from empire.agent.scheduler import PeriodicJobs
from empire.agent.tiering.backends import LocalBackend
from empire.agent.tiering.executor import RetierExecutor
from empire.agent.tiering.inventory import AccessEvent, ContentObject, Inventory
from empire.agent.tiering.metrics import TieringMetrics
from empire.agent.tiering.mover import Mover
from empire.agent.tiering.sweep import TieringSweep
from empire.agent.types import Reason, Retier
from empire.policies.storage import StoragePolicy
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal
from empire.state.store import SqlStateStore

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MB = 1024 * 1024


async def add(inv: Inventory, backend: LocalBackend, oid: str, size: int, idle_days: float) -> None:
    data = os.urandom(size)
    loc = backend.location_for(oid)
    path = backend.path("hot", loc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    created = NOW - timedelta(days=idle_days)
    await inv.register(ContentObject(id=oid, size=size, checksum="sha256:" + hashlib.sha256(data).hexdigest(),
                                     tier="hot", location=loc, created_at=created, tier_since=created))  # fmt: skip


@pytest.fixture
async def world(database, tmp_path: Path):
    clock = FakeClock(NOW)
    monitor = Monitor(CollectorRegistry())
    backend = LocalBackend({t: tmp_path / "tiers" / t for t in ("hot", "warm", "cold", "archive")})
    inv = SqlInventory(database)
    policy = StoragePolicy()
    mover = Mover(SqlMoveJournal(database), backend, policy, clock, metrics=monitor.group(TieringMetrics))
    store = SqlStateStore(database)
    runner = ActionRunner(store, {Retier: RetierExecutor(mover, inv)}, clock, monitor, replica="r1")
    sweep = TieringSweep(inv, mover, lambda a, now: runner.run(a, at=now), lambda: policy, monitor.group(TieringMetrics),
                         lambda: not runner.dry_run)  # fmt: skip
    await add(inv, backend, "old-big", 3 * MB, idle_days=200)  # -> archive
    await add(inv, backend, "quiet", 2 * MB, idle_days=45)  # -> warm
    await add(inv, backend, "fresh", 2 * MB, idle_days=2)  # stays hot
    await add(inv, backend, "tiny", 1000, idle_days=400)  # under the size floor: stays
    return SimpleNamespace(clock=clock, monitor=monitor, inv=inv, runner=runner, store=store, sweep=sweep,
                           backend=backend, policy=policy, mover=mover)  # fmt: skip


async def test_sweep_moves_what_pays_and_journals_each_retier_action(world) -> None:
    jobs = PeriodicJobs(world.clock, world.monitor)
    jobs.add("tiering-sweep", world.policy.sweep_every, world.sweep)
    assert await jobs.run_due() == ["tiering-sweep"]
    report = world.sweep.last
    assert (report.planned, report.results) == (2, {"applied": 2})
    assert {o: (await world.inv.get(o)).tier for o in ("old-big", "quiet", "fresh", "tiny")} == {
        "old-big": "archive", "quiet": "warm", "fresh": "hot", "tiny": "hot"}  # fmt: skip
    actions = await world.store.recent_actions()
    assert sorted((a.kind, a.subject, a.reason, a.state, a.params["to_tier"]) for a in actions) == [
        ("retier", "object/old-big", "idle_demotion", ActionState.applied, "archive"),
        ("retier", "object/quiet", "idle_demotion", ActionState.applied, "warm"),
    ]
    reg = world.monitor.registry
    assert reg.get_sample_value("empire_tier_objects", {"tier": "archive"}) == 1
    assert reg.get_sample_value("empire_tier_bytes", {"tier": "hot"}) == 2 * MB + 1000
    assert reg.get_sample_value("empire_tier_moves_total", {"result": "done", "reason": "idle_demotion"}) == 2
    assert reg.get_sample_value("empire_tier_planned_monthly_saving") == pytest.approx(report.monthly_saving)
    assert report.monthly_saving > 0

    # An archived track is played again: the next sweep promotes it back to hot.
    world.clock.advance(3600)
    await world.inv.record_access([AccessEvent("old-big", world.clock.now(), 30)], world.policy.access_half_life,
                                  actor="test", at=world.clock.now())  # fmt: skip
    report = await world.sweep(world.clock.now())
    assert report.results == {"applied": 1}
    assert (await world.inv.get("old-big")).tier == "hot"
    assert (await world.store.recent_actions(subject="object/old-big"))[0].reason == "access_promotion"


async def test_dry_run_journals_the_moves_and_moves_nothing(world) -> None:
    world.runner.dry_run = True
    report = await world.sweep(NOW)
    assert (report.planned, report.results) == (2, {"skipped": 2})
    assert {(await world.inv.get(o)).tier for o in ("old-big", "quiet")} == {"hot"}
    assert {a.state for a in await world.store.recent_actions()} == {ActionState.skipped}


async def test_read_back_settles_an_unfinished_retier_intent(world) -> None:
    executor = world.runner.executor("retier")
    await world.mover.move("quiet", "warm")
    rec = SimpleNamespace(subject="object/quiet", params={"to_tier": "warm"})
    assert (await executor.read_back(rec)).applied is True
    rec = SimpleNamespace(subject="object/fresh", params={"to_tier": "cold"})
    assert (await executor.read_back(rec)).applied is False


async def test_the_tiering_area_plugs_into_the_daemon(world, database, tmp_path: Path) -> None:
    from pydantic import SecretStr

    from empire.agent.tiering.setup import AREA

    deps = SimpleNamespace(
        policy=lambda: SimpleNamespace(policy=SimpleNamespace(storage=world.policy)),
        settings=SimpleNamespace(data_dir=tmp_path, replica_id="r1", ingest_token=SecretStr("x"),
                                 http=SimpleNamespace(max_body_bytes=1000)),
        monitor=world.monitor, db=database, clock=world.clock, runner=world.runner, secret_reader=None, offered={},
    )  # fmt: skip
    handle = AREA.build(deps)
    jobs = PeriodicJobs(world.clock, world.monitor)
    for job in handle.jobs:
        jobs.add(job.name, job.every(SimpleNamespace(storage=world.policy)), job.run)
    assert list(jobs.jobs) == ["tiering-sweep"]
    assert [r.path for r in handle.routes] == ["/v1/content/{id}", "/v1/content/access", "/v1/content/revenue"]
    assert handle.status["tiering"]()["last_sweep"] is None
    assert handle.offers["storage_backend"] is not None and handle.executors
    await handle.background[0]()
    await jobs.run_due()
    # the default local roots are <data_dir>/tiers/<tier>, where the fixture put the files
    assert handle.status["tiering"]()["last_sweep"]["results"] == {"applied": 2}
    assert (await world.inv.get("old-big")).tier == "archive"


async def test_a_move_that_outlasts_the_runner_timeout_is_journaled_as_applied(world) -> None:
    """A started move is shielded: the runner's timeout (a guard against hung executors) must not
    turn a completed move into a 'failed' journal entry. The runner's timeout is wall-clock, so this
    test spends 50 ms of it."""
    import anyio

    class SlowBackend(LocalBackend):
        async def copy(self, *a, **kw):
            await anyio.sleep(0.05)
            return await super().copy(*a, **kw)

    slow = SlowBackend(world.backend.roots)
    mover = Mover(world.mover.journal, slow, world.policy, world.clock)
    runner = ActionRunner(world.store, {Retier: RetierExecutor(mover, world.inv)}, world.clock,
                          Monitor(CollectorRegistry()), replica="r1", timeout=0.01)  # fmt: skip
    out = await runner.run(Retier("quiet", "hot", "warm", 2 * MB, (Reason.idle_demotion,)))
    assert out.status.value == "applied"
    assert (await world.inv.get("quiet")).tier == "warm"
    (row,) = await world.store.recent_actions("object/quiet")
    assert row.state == ActionState.applied


async def test_dry_run_leaves_interrupted_moves_for_a_live_run(world) -> None:
    """Recovery copies, switches and deletes like a move: a dry run (`tiers apply --dry-run`,
    `loop.dry_run`) must not do it; the next live sweep does."""

    class Crash(BaseException):
        pass

    def crash(point: str) -> None:
        if point == "copied":
            raise Crash

    dead = Mover(world.mover.journal, world.backend, world.policy, world.clock, fault=crash)
    with pytest.raises(Crash):
        await dead.move("quiet", "warm", Reason.idle_demotion)
    world.clock.advance(301)  # its lease has run out
    world.runner.dry_run = True
    assert (await world.sweep(world.clock.now())).recovered == 0
    assert (await world.inv.get("quiet")).status == "moving"
    world.runner.dry_run = False
    assert (await world.sweep(world.clock.now())).recovered == 1
    assert (await world.inv.get("quiet")).tier == "warm"


async def test_tier_gauges_read_zero_on_a_fresh_install_before_any_sweep(database, tmp_path: Path) -> None:
    """A fresh install's dashboard shows its empty tiers (0 bytes, 0 objects, $0), not "no data":
    the daemon's setup sets the gauges at start, not after the first sweep (an hour later)."""
    from pydantic import SecretStr

    from empire.agent.tiering.setup import AREA

    clock, monitor = FakeClock(NOW), Monitor(CollectorRegistry())
    runner = ActionRunner(SqlStateStore(database), {}, clock, monitor, replica="r1")
    deps = SimpleNamespace(
        policy=lambda: SimpleNamespace(policy=SimpleNamespace(storage=StoragePolicy())),
        settings=SimpleNamespace(data_dir=tmp_path, replica_id="r1", ingest_token=SecretStr("x"),
                                 http=SimpleNamespace(max_body_bytes=1000)),
        monitor=monitor, db=database, clock=clock, runner=runner, secret_reader=None, offered={},
    )  # fmt: skip
    for task in AREA.build(deps).background:
        await task()
    for tier in ("hot", "warm", "cold", "archive"):
        for name in ("empire_tier_bytes", "empire_tier_objects", "empire_tier_monthly_cost"):
            assert monitor.registry.get_sample_value(name, {"tier": tier}) == 0, (name, tier)
