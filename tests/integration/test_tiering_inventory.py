"""Inventory on real SQLite and PostgreSQL: SQL candidate selection agrees with the pure planner,
access decay and revenue ingestion are all-or-nothing and audited."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from empire.agent.tiering.inventory import AccessEvent, ContentObject, Inventory, RevenueFigure
from empire.agent.tiering.planner import plan_object
from empire.errors import NotFoundError
from empire.policies.storage import StoragePolicy
from empire.state import tables as t
from empire.state.inventory import SqlInventory

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SUM = "sha256:" + "0" * 64


def random_rows(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    tiers = ["hot", "warm", "cold", "archive"]
    rows = []
    for i in range(n):
        created = NOW - timedelta(days=rng.uniform(0, 700))
        since = created + (NOW - created) * rng.random()
        accessed = rng.random() < 0.7
        last = since + (NOW - since) * rng.random() if accessed and rng.random() < 0.5 else (
            created + (NOW - created) * rng.random() if accessed else None)  # fmt: skip
        rows.append(dict(
            id=f"obj-{i:05d}", size=int(10 ** rng.uniform(4, 9.5)), checksum=SUM, tier=rng.choice(tiers),
            location=f"obj-{i:05d}", persona="p", title=None, status=rng.choice(["active"] * 9 + ["moving"]),
            created_at=created, tier_since=since, last_access_at=last,
            access_score=rng.choice([0.0, rng.uniform(0, 3), rng.uniform(0, 200)]) if accessed else 0.0,
            access_updated_at=last, revenue=rng.choice([0.0, 0.5, rng.uniform(0, 100)]), meta={},
        ))  # fmt: skip
    return rows


async def test_sql_selection_matches_the_pure_planner(database) -> None:
    inv = SqlInventory(database)
    rows = random_rows(3000)
    async with database.begin() as conn:
        await conn.execute(insert(t.content_objects), rows)
    policy = StoragePolicy()
    for pol in (policy, policy.model_copy(update={"promote_on_access": False, "horizon": timedelta(days=30)})):
        expected = {}
        for r in rows:
            move = plan_object(ContentObject(**r).view(), pol, NOW)
            if move is not None:
                expected[move.object_id] = move
        planned = await inv.plan(pol, NOW, limit=100_000)
        assert {m.object_id: (m.from_tier, m.to_tier, m.reason) for m in planned} == {
            k: (m.from_tier, m.to_tier, m.reason) for k, m in expected.items()
        }
        assert len(expected) > 100  # the random inventory exercises both directions
        assert {m.reason for m in planned} == {"idle_demotion", "access_promotion"} or not pol.promote_on_access
        for m in planned:
            assert m.monthly_saving == pytest.approx(expected[m.object_id].monthly_saving, rel=1e-6, abs=1e-12)
            assert m.move_cost == pytest.approx(expected[m.object_id].move_cost, rel=1e-6, abs=1e-12)
        savings = [m.monthly_saving for m in planned]
        assert savings == sorted(savings, reverse=True)
        top = await inv.plan(pol, NOW, limit=10)
        assert [m.object_id for m in top] == [m.object_id for m in planned[:10]]
        summary = await inv.plan_summary(pol, NOW)
        assert sum(s.objects for s in summary) == len(expected)
        assert sum(s.monthly_saving for s in summary) == pytest.approx(sum(savings))


async def _one(inv: Inventory, oid: str = "track-1") -> None:
    await inv.register(ContentObject(id=oid, size=1000, checksum=SUM, tier="hot", location=oid,
                                     created_at=NOW - timedelta(days=10), tier_since=NOW - timedelta(days=10)))  # fmt: skip


async def test_access_decays_and_unknown_ids_change_nothing(database) -> None:
    inv = SqlInventory(database)
    await _one(inv)
    h = timedelta(days=7)
    await inv.record_access([AccessEvent("track-1", NOW - timedelta(days=7), 4)], h, actor="test", at=NOW)
    await inv.record_access([AccessEvent("track-1", NOW, 1)], h, actor="test", at=NOW)
    obj = await inv.get("track-1")
    assert obj.access_score == pytest.approx(4 / 2 + 1)
    assert obj.last_access_at == NOW and obj.access_updated_at == NOW
    with pytest.raises(NotFoundError, match="nope"):
        await inv.record_access([AccessEvent("track-1", NOW, 5), AccessEvent("nope", NOW)], h, actor="t", at=NOW)
    assert (await inv.get("track-1")).access_score == pytest.approx(3)  # all or nothing
    async with database.connect() as conn:
        audits = (await conn.execute(select(t.audit.c.action, t.audit.c.actor).order_by(t.audit.c.id))).all()
    assert [a.action for a in audits] == ["content.register", "content.access", "content.access"]


async def test_revenue_set_and_add(database) -> None:
    inv = SqlInventory(database)
    await _one(inv)
    await inv.record_revenue([RevenueFigure("track-1", 2.5)], actor="csv", at=NOW)
    await inv.record_revenue([RevenueFigure("track-1", 1.0, "add")], actor="csv", at=NOW)
    assert (await inv.get("track-1")).revenue == pytest.approx(3.5)
    with pytest.raises(NotFoundError):
        await inv.record_revenue([RevenueFigure("x", 1.0)], actor="csv", at=NOW)


async def test_usage_counts_bytes_per_tier(database) -> None:
    inv = SqlInventory(database)
    await _one(inv, "a")
    await _one(inv, "b")
    usage = await inv.usage()
    assert [(u.tier, u.objects, u.bytes) for u in usage] == [("hot", 2, 2000)]
