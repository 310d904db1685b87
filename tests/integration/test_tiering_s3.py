"""Crash-safe moves on the S3 backend (moto server on 127.0.0.1): storage classes, corruption, recovery."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from empire.agent.clock import FakeClock
from empire.agent.tiering.inventory import ContentObject, Inventory
from empire.agent.tiering.mover import Mover
from empire.agent.types import Reason
from empire.policies.storage import StoragePolicy, Tier, TierRule
from empire.state import tables as t
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    from fakes.s3 import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
async def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator:
    import boto3

    from empire.agent.tiering.backends import build_backend

    monkeypatch.setenv("T_S3_KEY", "test")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=bucket)  # fmt: skip
    policy = StoragePolicy(
        backend="s3",
        s3={"bucket": bucket, "endpoint_url": endpoint, "addressing_style": "path",
            "access_key_id": {"env": "T_S3_KEY"}, "secret_access_key": {"env": "T_S3_KEY"}},
        tiers=(Tier(name="hot", cost_per_gb_month=0.023, storage_class="STANDARD"),
               Tier(name="cold", cost_per_gb_month=0.004, storage_class="GLACIER_IR", min_days=90,
                    enter_when=TierRule(idle_days=90))),
    )  # fmt: skip
    backend = build_backend(policy, data_dir=None)  # type: ignore[arg-type]
    yield policy, backend
    await backend.aclose()


async def put(inv: Inventory, backend, oid: str, data: bytes) -> None:
    async def one():
        yield data

    loc = backend.location_for(oid)
    await backend.put("hot", loc, one())
    await inv.register(ContentObject(id=oid, size=len(data), checksum="sha256:" + hashlib.sha256(data).hexdigest(),
                                     tier="hot", location=loc, created_at=NOW - timedelta(days=200),
                                     tier_since=NOW - timedelta(days=200)))  # fmt: skip


async def test_sweep_plans_and_moves_on_s3_with_recovery(database, s3) -> None:
    policy, backend = s3
    inv = SqlInventory(database)
    data = os.urandom(600_000)
    await put(inv, backend, "track-1", data)
    await put(inv, backend, "track-2", os.urandom(300_000))
    mover = Mover(SqlMoveJournal(database), backend, policy, FakeClock(NOW))
    planned = await inv.plan(policy, NOW, 10)
    assert {(m.object_id, m.to_tier) for m in planned} == {("track-1", "cold"), ("track-2", "cold")}
    results = await mover.apply([m for m in planned if m.object_id == "track-1"])
    assert [r.status for r in results] == ["done"]
    obj = await inv.get("track-1")
    assert obj.tier == "cold" and await backend.checksum("cold", obj.location) == obj.checksum
    assert not await backend.exists("hot", obj.location)
    head = backend.client.head_object(Bucket=backend.bucket, Key=backend.key("cold", obj.location))
    assert head["StorageClass"] == "GLACIER_IR"

    # A move journaled as copied whose process died: recovery verifies and finishes it.
    loc = backend.location_for("track-2")
    await backend.copy("hot", loc, "cold", loc)
    async with database.begin() as conn:
        await conn.execute(update(t.content_objects).where(t.content_objects.c.id == "track-2").values(status="moving"))
        await conn.execute(t.moves.insert().values(
            object_id="track-2", from_tier="hot", to_tier="cold", src_location=loc, dst_location=loc, step="copied",
            reason=Reason.idle_demotion.value, created_at=NOW, updated_at=NOW))  # fmt: skip
    recovered = await mover.recover()
    assert [(r.object_id, r.status, r.recovered) for r in recovered] == [("track-2", "done", True)]
    assert (await inv.get("track-2")).tier == "cold"
    assert await backend.list("hot") == []


async def test_a_corrupted_s3_source_aborts_the_move(database, s3) -> None:
    policy, backend = s3
    inv = SqlInventory(database)
    await put(inv, backend, "track-1", b"a" * 200_000)

    async def other():
        yield b"b" * 200_000

    await backend.put("hot", backend.location_for("track-1"), other())  # overwritten behind the inventory
    result = await Mover(SqlMoveJournal(database), backend, policy, FakeClock(NOW)).move(
        "track-1", "cold", Reason.idle_demotion
    )
    assert result.status == "aborted" and "source changed or corrupted" in (result.error or "")
    assert (await inv.get("track-1")).status == "quarantined"
    assert await backend.list("cold") == []
