"""One contract for every `BackupCatalog`: the memory twin, SQLite and PostgreSQL behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.backup.memory import MemoryBackupCatalog
from empire.agent.backup.planning import BackupEntry
from empire.agent.backup.ports import BackupCatalog
from empire.state.backups import SqlBackupCatalog
from empire.state.database import Database

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def catalog(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[BackupCatalog]:
    if request.param == "memory":
        yield MemoryBackupCatalog()
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue(
        "postgres_url")  # fmt: skip
    db = await Database.open(url)
    try:
        yield SqlBackupCatalog(db)
    finally:
        await db.close()


def entry(cls: str, hours: int, size: int = 100) -> BackupEntry:
    at = T0 + timedelta(hours=hours)
    name = f"empire-{at:%Y%m%dT%H%M%SZ}.sqlite3"
    return BackupEntry(cls, name, at.strftime("%Y%m%d%H"), "hot", f"backups/{cls}/{name}", size,
                       "sha256:" + "ab" * 32, at)  # fmt: skip


async def test_add_is_idempotent_and_entries_are_oldest_first(catalog: BackupCatalog) -> None:
    assert await catalog.add(entry("hourly", 2))
    assert await catalog.add(entry("hourly", 1))
    assert await catalog.add(entry("daily", 1))
    assert not await catalog.add(entry("hourly", 2, size=999))  # a retried write changes nothing
    got = await catalog.entries()
    assert [(e.cls, e.created_at) for e in got] == [
        ("daily", T0 + timedelta(hours=1)), ("hourly", T0 + timedelta(hours=1)), ("hourly", T0 + timedelta(hours=2))
    ]  # fmt: skip
    assert got[-1] == entry("hourly", 2)
    assert got[-1].created_at.tzinfo is not None


async def test_latest_per_class_and_deleted_ones_drop_out(catalog: BackupCatalog) -> None:
    for h in range(3):
        await catalog.add(entry("hourly", h))
    await catalog.add(entry("monthly", 0))
    latest = await catalog.latest()
    assert {c: e.created_at for c, e in latest.items()} == {"hourly": T0 + timedelta(hours=2), "monthly": T0}
    when = T0 + timedelta(days=1)
    assert await catalog.mark_deleted("hourly", entry("hourly", 2).name, when)
    assert not await catalog.mark_deleted("hourly", entry("hourly", 2).name, when)
    assert not await catalog.mark_deleted("daily", "nope", when)
    assert (await catalog.latest())["hourly"].created_at == T0 + timedelta(hours=1)
    everything = await catalog.entries(include_deleted=True)
    assert len(everything) == 4 and [e.deleted_at for e in everything if e.deleted_at] == [when]
