"""One contract for every MoveJournal: the memory twin, SQLite and PostgreSQL behave alike.

What makes moves crash-safe lives here: every write is a compare-and-set on the move's owner, the
pointer switch and its step are one transaction, and an orphaned move is taken over by one claimant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.tiering.inventory import ContentObject, Inventory
from empire.agent.tiering.journal import Move, MoveAborted, MoveJournal, MoveLost, Skipped
from empire.agent.tiering.memory import MemoryInventory, MemoryMoveJournal
from empire.agent.types import Reason
from empire.errors import NotFoundError
from empire.state.database import Database
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=5)
SUM = "sha256:" + "0" * 64
TIERS = ("hot", "warm", "cold", "archive")


@pytest.fixture
def stores(state_db: Database | None) -> tuple[Inventory, MoveJournal]:
    if state_db is None:
        inv = MemoryInventory()
        return inv, MemoryMoveJournal(inv)
    return SqlInventory(state_db), SqlMoveJournal(state_db)


async def start(stores: tuple[Inventory, MoveJournal], oid: str = "a", owner: str = "p1") -> Move:
    inv, journal = stores
    await inv.register(ContentObject(id=oid, size=1234, checksum=SUM, tier="hot", location=f"hot/{oid}",
                                     created_at=NOW, tier_since=NOW))  # fmt: skip
    move = await journal.claim(oid, "cold", Reason.idle_demotion, "hot", dst=f"cold/{oid}", tiers=TIERS, owner=owner,
                               now=NOW, lease_until=LEASE)  # fmt: skip
    assert isinstance(move, Move)
    return move


async def test_a_claim_marks_the_object_moving_and_journals_the_move(stores) -> None:
    inv, journal = stores
    move = await start(stores)
    assert (move.from_tier, move.to_tier, move.src, move.dst) == ("hot", "cold", "hot/a", "cold/a")
    assert (move.checksum, move.size, move.reason) == (SUM, 1234, Reason.idle_demotion)
    assert (await inv.get("a")).status == "moving"
    (u,) = await journal.unfinished()
    assert (u.move.id, u.step, u.owner, u.lease_expires_at) == (move.id, "planned", "p1", LEASE)
    again = await journal.claim("a", "cold", Reason.idle_demotion, "hot", dst="cold/a", tiers=TIERS, owner="p2",
                                now=NOW, lease_until=LEASE)  # fmt: skip
    assert again == Skipped("hot", "object is moving")
    with pytest.raises(NotFoundError):
        await journal.claim("zz", "cold", Reason.manual, None, dst="x", tiers=TIERS, owner="p1", now=NOW,
                            lease_until=LEASE)  # fmt: skip


async def test_a_claim_skips_what_moved_or_cannot_move(stores) -> None:
    inv, journal = stores
    await inv.register(ContentObject(id="b", size=1, checksum=SUM, tier="warm", location="warm/b", created_at=NOW,
                                     tier_since=NOW))  # fmt: skip

    async def claim(to: str, src: str | None, tiers=TIERS):
        return await journal.claim("b", to, Reason.manual, src, dst="x", tiers=tiers, owner="p", now=NOW,
                                   lease_until=LEASE)  # fmt: skip

    assert (await claim("cold", "hot")).why.startswith("object is in warm, not hot")
    assert await claim("warm", None) == Skipped("warm", "object is already in warm")
    assert await claim("cold", None, ("hot", "cold")) == Skipped("warm", "object's tier warm is not configured")
    assert (await inv.get("b")).status == "active" and await journal.unfinished() == []


async def test_only_the_owner_writes(stores) -> None:
    _, journal = stores
    move = await start(stores)
    await journal.renew(move, "p1", NOW, LEASE + timedelta(minutes=1), step="copied")
    (u,) = await journal.unfinished()
    assert (u.step, u.lease_expires_at) == ("copied", LEASE + timedelta(minutes=1))
    for write in (
        journal.renew(move, "p2", NOW, LEASE, step="verified"),
        journal.switch(move, "p2", NOW, LEASE),
        journal.pointer(move, "p2", NOW, LEASE),
        journal.aborted(move, "p2", NOW, LEASE, error="x", quarantine=False, actor="t"),
    ):
        with pytest.raises(MoveLost):
            await write
    assert [u.step for u in await journal.unfinished()] == ["copied"]


async def test_the_switch_moves_the_pointer_with_its_step(stores) -> None:
    inv, journal = stores
    move = await start(stores)
    assert await journal.pointer(move, "p1", NOW, LEASE) == ("hot", "hot/a")
    later = NOW + timedelta(minutes=2)
    await journal.switch(move, "p1", later, LEASE)
    obj = await inv.get("a")
    assert (obj.tier, obj.location, obj.tier_since, obj.status) == ("cold", "cold/a", later, "active")
    assert [u.step for u in await journal.unfinished()] == ["switched"]
    await journal.renew(move, "p1", later, LEASE, step="done")
    assert await journal.unfinished() == []


async def test_a_switch_refuses_a_pointer_that_moved_and_writes_nothing(stores) -> None:
    inv, journal = stores
    move = await start(stores)
    await journal.aborted(move, "p1", NOW, LEASE, error="first abort", quarantine=False, actor="t")  # object active
    with pytest.raises(MoveAborted):
        await journal.switch(move, "p1", NOW, LEASE)
    obj = await inv.get("a")
    assert (obj.tier, obj.location, obj.status) == ("hot", "hot/a", "active")


async def test_an_abort_puts_the_object_back_or_quarantines_it(stores) -> None:
    inv, journal = stores
    first = await start(stores, "a")
    second = await start(stores, "b")
    await journal.aborted(first, "p1", NOW, LEASE, error="copy failed", quarantine=False, actor="t")
    await journal.aborted(second, "p1", NOW, LEASE, error="source changed", quarantine=True, actor="t")
    assert (await inv.get("a")).status == "active" and (await inv.get("b")).status == "quarantined"
    assert await journal.unfinished() == []


async def test_one_claimant_takes_an_orphaned_move_over(stores) -> None:
    _, journal = stores
    move = await start(stores, owner="dead")
    assert not await journal.take_over(move, "copied", "dead", "r1", NOW, LEASE)  # not at that step
    assert await journal.take_over(move, "planned", "dead", "r1", NOW, LEASE)
    assert not await journal.take_over(move, "planned", "dead", "r2", NOW, LEASE)  # r1 got there first
    (u,) = await journal.unfinished()
    assert u.owner == "r1"
    with pytest.raises(MoveLost):
        await journal.renew(move, "dead", NOW, LEASE, step="copied")  # the old owner wakes up: too late
