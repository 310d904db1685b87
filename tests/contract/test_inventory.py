"""One contract for every Inventory: the memory twin, SQLite and PostgreSQL behave alike, and both
select the same moves as the pure planner (the SQL selection mirrors `planner.plan_object`)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.tiering.inventory import AccessEvent, ContentObject, Inventory, RevenueFigure
from empire.agent.tiering.memory import MemoryInventory
from empire.agent.tiering.planner import plan_object
from empire.errors import ConfigError, NotFoundError
from empire.policies.storage import StoragePolicy
from empire.state.database import Database
from empire.state.inventory import SqlInventory

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SUM = "sha256:" + "0" * 64
H = timedelta(days=7)


@pytest.fixture
def inv(state_db: Database | None) -> Inventory:
    return MemoryInventory() if state_db is None else SqlInventory(state_db)


def obj(oid: str, tier: str = "hot", size: int = 1000, days: float = 10, **kw) -> ContentObject:
    at = NOW - timedelta(days=days)
    return ContentObject(id=oid, size=size, checksum=SUM, tier=tier, location=oid, created_at=at, tier_since=at, **kw)


async def test_register_get_and_list(inv: Inventory) -> None:
    await inv.register(obj("b"))
    await inv.register(obj("a", "warm", 5000))
    await inv.register(obj("a", "warm", 5000))  # the same again: nothing happens
    with pytest.raises(ConfigError):  # the same id with other bytes
        await inv.register(replace(obj("a", "warm", 5000), checksum="sha256:" + "1" * 64))
    with pytest.raises(ConfigError):
        await inv.register(replace(obj("c"), checksum="md5:x"))
    assert (await inv.get("a")).tier == "warm" and (await inv.get("a")).size == 5000
    with pytest.raises(NotFoundError):
        await inv.get("c")
    assert [o.id for o in await inv.all()] == ["a", "b"] and [o.id for o in await inv.all(limit=1)] == ["a"]
    assert await inv.missing({"a", "x", "c", "b"}) == ["c", "x"]
    usage = await inv.usage()
    assert [(u.tier, u.objects, u.bytes, u.moving) for u in usage] == [("hot", 1, 1000, 0), ("warm", 1, 5000, 0)]


async def test_status_and_accepted_checksum(inv: Inventory) -> None:
    await inv.register(obj("a"))
    await inv.set_status("a", "quarantined", NOW, actor="mover", note="checksum mismatch")
    assert (await inv.get("a")).status == "quarantined"
    assert [u.quarantined for u in await inv.usage()] == [1]
    new = "sha256:" + "2" * 64
    await inv.accept_checksum("a", new, NOW, actor="ops")
    got = await inv.get("a")
    assert got.checksum == new and got.status == "active"
    with pytest.raises(ConfigError):
        await inv.accept_checksum("a", "bad", NOW, actor="ops")
    with pytest.raises(NotFoundError):
        await inv.accept_checksum("zz", new, NOW, actor="ops")
    await inv.set_status("a", "moving", NOW, actor="mover")
    with pytest.raises(ConfigError):
        await inv.accept_checksum("a", new, NOW, actor="ops")


async def test_pages_samples_and_relocation(inv: Inventory) -> None:
    """What `empire content verify` walks (every object a page at a time, or a sample) and records
    (bytes found intact in another tier than the inventory says)."""
    for oid in ("d", "a", "c", "b", "e"):
        await inv.register(obj(oid))
    pages, after = [], ""
    while page := await inv.page(after, limit=2):
        pages.append([o.id for o in page])
        after = page[-1].id
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    sample = [o.id for o in await inv.sample(3)]
    assert len(sample) == 3 and sample == sorted(set(sample)) and set(sample) <= set("abcde")
    assert len(await inv.sample(50)) == 5
    await inv.set_status("c", "moving", NOW, actor="mover")
    await inv.relocate("c", "cold", NOW, actor="ops", note="verify: found in cold")
    got = await inv.get("c")
    assert (got.tier, got.status, got.tier_since, got.location) == ("cold", "active", NOW, "c")
    with pytest.raises(NotFoundError):
        await inv.relocate("zz", "cold", NOW, actor="ops", note="")


async def test_access_decays_all_or_nothing(inv: Inventory) -> None:
    await inv.register(obj("a"))
    assert await inv.record_access([], H, actor="t", at=NOW) == 0
    assert await inv.record_access([AccessEvent("a", NOW - timedelta(days=7), 4)], H, actor="t", at=NOW) == 1
    await inv.record_access([AccessEvent("a", NOW, 1)], H, actor="t", at=NOW)
    got = await inv.get("a")
    assert got.access_score == pytest.approx(4 / 2 + 1) and got.last_access_at == NOW and got.access_updated_at == NOW
    with pytest.raises(NotFoundError, match="nope"):
        await inv.record_access([AccessEvent("a", NOW, 5), AccessEvent("nope", NOW)], H, actor="t", at=NOW)
    with pytest.raises(ConfigError):
        await inv.record_access([AccessEvent("a", NOW + timedelta(hours=1))], H, actor="t", at=NOW)  # future
    assert (await inv.get("a")).access_score == pytest.approx(3)


async def test_revenue_set_add_and_bounds(inv: Inventory) -> None:
    await inv.register(obj("a"))
    await inv.record_revenue([RevenueFigure("a", 2.5)], actor="csv", at=NOW)
    assert await inv.record_revenue([RevenueFigure("a", 1.0, "add")], actor="csv", at=NOW) == 1
    assert (await inv.get("a")).revenue == pytest.approx(3.5)
    with pytest.raises(NotFoundError):
        await inv.record_revenue([RevenueFigure("a", 9.0), RevenueFigure("x", 1.0)], actor="csv", at=NOW)
    with pytest.raises(ConfigError):
        await inv.record_revenue([RevenueFigure("a", 9e11, "add"), RevenueFigure("a", 9e11, "add")], actor="c", at=NOW)
    assert (await inv.get("a")).revenue == pytest.approx(3.5)  # nothing written either way


async def test_moves_agree_with_the_pure_planner(inv: Inventory) -> None:
    rng = random.Random(11)
    objects = []
    for i in range(300):
        created = NOW - timedelta(days=rng.uniform(0, 700))
        since = created + (NOW - created) * rng.random()
        accessed = rng.random() < 0.6
        last = since + (NOW - since) * rng.random() if accessed else None
        o = ContentObject(
            id=f"o{i:04d}", size=int(10 ** rng.uniform(4, 9.5)), checksum=SUM, tier=rng.choice(["hot", "warm", "cold"]),
            location=f"o{i:04d}", created_at=created, tier_since=since, last_access_at=last,
            access_score=rng.uniform(0, 50) if accessed else 0.0, access_updated_at=last,
            revenue=rng.choice([0.0, rng.uniform(0, 50)]),
        )  # fmt: skip
        objects.append(o)
        await inv.register(o)
    policy = StoragePolicy()
    expected = {m.object_id: m for o in objects if (m := plan_object(o.view(), policy, NOW)) is not None}
    planned = await inv.plan(policy, NOW, limit=100_000)
    assert len(expected) > 20 and {m.object_id for m in planned} == set(expected)
    assert {(m.object_id, m.from_tier, m.to_tier, m.reason) for m in planned} == {
        (k, m.from_tier, m.to_tier, m.reason) for k, m in expected.items()
    }
    savings = [m.monthly_saving for m in planned]
    assert savings == sorted(savings, reverse=True)
    assert [m.object_id for m in await inv.plan(policy, NOW, limit=5)] == [m.object_id for m in planned[:5]]
    summary = await inv.plan_summary(policy, NOW)
    assert sum(s.objects for s in summary) == len(expected)
    assert sum(s.monthly_saving for s in summary) == pytest.approx(sum(savings))
    assert [(s.from_tier, s.to_tier) for s in summary] == sorted({(m.from_tier, m.to_tier) for m in planned})
