"""Recovery beside live moves: several processes share the state DB (replicas, `empire tiers
apply` next to the daemon), so recovery must never take a move that is still running, a move
whose owner stalled past its lease must stop without touching a file, and two recoveries of one
orphaned move must not both act. In every case the object ends readable in exactly one tier."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from test_tiering_moves import add, digest, partials, roots, where_is

from empire.agent.clock import FakeClock
from empire.agent.tiering.backends import LocalBackend
from empire.agent.tiering.mover import Mover
from empire.agent.tiering.owner import owner_is_dead_here, process_owner
from empire.agent.types import Reason
from empire.policies.storage import StoragePolicy
from empire.state.database import Database
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 1, tzinfo=UTC)
DATA = os.urandom(400_000)  # about 7 chunks of 64 KiB


class PausedBackend(LocalBackend):
    """Stops the first copy after its first chunk until `gate` is set (a slow disk, a GC pause)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.reached, self.gate = anyio.Event(), anyio.Event()

    async def copy(self, src_tier, src_location, dst_tier, dst_location, progress=None):
        async def paused(n: int) -> None:
            await progress(n)
            if not self.reached.is_set():
                self.reached.set()
                await self.gate.wait()

        return await super().copy(src_tier, src_location, dst_tier, dst_location, paused)


@pytest.fixture
async def world(database: Database, tmp_path: Path):
    clock = FakeClock(NOW)
    plain = LocalBackend(roots(tmp_path), chunk_size=64 * 1024)
    inv = SqlInventory(database)
    await add(inv, plain, "big", DATA)
    paused = PausedBackend(roots(tmp_path), chunk_size=64 * 1024)
    return SimpleNamespace(
        clock=clock, inv=inv, plain=plain, tmp=tmp_path,
        a=Mover(SqlMoveJournal(database), paused, StoragePolicy(), clock),  # the live mover
        b=Mover(SqlMoveJournal(database), plain, StoragePolicy(), clock),  # another process's recovery
        c=Mover(SqlMoveJournal(database), plain, StoragePolicy(), clock),
    )  # fmt: skip


async def exactly_one_readable_copy(w) -> str:
    obj = await w.inv.get("big")
    assert obj.status == "active"
    assert await where_is(w.plain, obj.location) == [obj.tier]
    assert await w.plain.checksum(obj.tier, obj.location) == digest(DATA)
    assert partials(w.tmp) == []
    return obj.tier


@asynccontextmanager
async def live_move(world) -> AsyncIterator[dict]:
    """Mover `a` moves "big" to cold and pauses after its first chunk while the body runs; on exit
    the copy goes on and `result["a"]` is the move's result."""
    result: dict = {}

    async def move() -> None:
        result["a"] = await world.a.move("big", "cold", Reason.idle_demotion)

    async with anyio.create_task_group() as tg:
        tg.start_soon(move)
        await world.a.backend.reached.wait()
        yield result
        world.a.backend.gate.set()


async def test_recovery_leaves_a_live_move_alone(world) -> None:
    async with live_move(world) as result:
        assert await world.b.recover() == []  # leased by a live process: not touched
    assert result["a"].status == "done"
    assert await exactly_one_readable_copy(world) == "cold"


async def test_a_mover_that_stalls_past_its_lease_loses_the_move_and_touches_nothing(world) -> None:
    async with live_move(world) as result:
        world.clock.advance(600)  # the live mover stalls for 10 minutes, past its 5-minute lease
        (recovered,) = await world.b.recover()
        assert recovered.status == "aborted" and recovered.recovered  # rolled back: it was mid-copy
    assert result["a"].status == "failed" and "taken over" in (result["a"].error or "")
    assert await exactly_one_readable_copy(world) == "hot"
    assert (await world.b.move("big", "cold", Reason.idle_demotion)).status == "done"  # and it can move again
    assert await exactly_one_readable_copy(world) == "cold"


class Crash(BaseException):
    """Stands in for kill -9 inside this process: nothing after it runs."""


async def test_two_recoveries_of_one_orphaned_move_act_once(world, database: Database) -> None:
    def crash(point: str) -> None:
        if point == "copied":
            raise Crash

    dead = Mover(SqlMoveJournal(database), world.plain, StoragePolicy(), world.clock, fault=crash)
    with pytest.raises(Crash):
        await dead.move("big", "cold", Reason.idle_demotion)
    assert await world.b.recover() == []  # its owner's lease still runs (same live process)
    world.clock.advance(301)
    results: list = []

    async def recover(mover: Mover) -> None:
        results.extend(await mover.recover())

    async with anyio.create_task_group() as tg:
        tg.start_soon(recover, world.b)
        tg.start_soon(recover, world.c)
    assert [(r.status, r.recovered) for r in results] == [("done", True)]
    assert await exactly_one_readable_copy(world) == "cold"


def test_owner_liveness_is_judged_on_this_host_only() -> None:
    me = process_owner()
    assert not owner_is_dead_here(me)  # this process is alive
    host, pid, start, tag = me.split("/")
    assert owner_is_dead_here(f"{host}/{pid}/{int(start) + 1}/{tag}")  # same pid, another process: gone
    assert owner_is_dead_here(f"{host}/999999999/1/x")  # no such process
    assert not owner_is_dead_here(f"another-host/{pid}/1/x")  # cannot tell: the lease decides
    assert owner_is_dead_here(None)  # a move journaled before leases existed


async def test_a_rollback_the_store_interrupted_is_finished_by_the_same_mover(world, database: Database) -> None:
    """The copy fails and so does the clean-up: the move is left for recovery, owned by this mover.
    Its own next recovery (the next sweep) must finish it, not wait for its own lease."""
    from empire.errors import TemporaryError

    class Flaky(LocalBackend):
        deletes = 0

        async def copy(self, *a, **kw):
            raise TemporaryError("no space left on device")

        async def delete(self, tier, location):
            Flaky.deletes += 1
            if Flaky.deletes == 1:
                raise TemporaryError("store unreachable")
            return await super().delete(tier, location)

    mover = Mover(SqlMoveJournal(database), Flaky(roots(world.tmp), chunk_size=64 * 1024), StoragePolicy(), world.clock)
    result = await mover.move("big", "cold", Reason.idle_demotion)
    assert result.status == "failed" and "rollback pending" in (result.error or "")
    assert (await world.inv.get("big")).status == "moving"
    (recovered,) = await mover.recover()  # no clock advance: it is this mover's own move
    assert recovered.status == "aborted"
    assert await exactly_one_readable_copy(world) == "hot"
