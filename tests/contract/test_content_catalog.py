"""One contract for every ContentCatalog: the memory twin, SQLite and PostgreSQL behave alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.pools.memory import MemoryContentCatalog
from empire.agent.pools.publish import ContentCatalog, ContentMeta, NewContent
from empire.state.content import SqlContentCatalog
from empire.state.database import Database

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
SUM = "sha256:" + "0" * 64


@pytest.fixture
def catalog(state_db: Database | None) -> ContentCatalog:
    return MemoryContentCatalog() if state_db is None else SqlContentCatalog(state_db)


def track(oid: str, persona: str, minutes: int, title: str | None = None, status: str = "active") -> NewContent:
    meta = ContentMeta(persona, title, status, T0 + timedelta(minutes=minutes), {"prompt": f"prompt {oid}"})
    return NewContent(oid, 100, SUM, "hot", f"hot/{oid}", meta)


async def test_recent_is_the_personas_newest_active_tracks(catalog: ContentCatalog) -> None:
    for item in (track("a", "luna", 1, "First"), track("b", "luna", 3, "Third"), track("c", "luna", 2),
                 track("d", "luna", 4, "Banned", "quarantined"), track("e", "grit", 5, "Other")):  # fmt: skip
        await catalog.add(item)
    assert await catalog.recent("luna", 10) == [
        ("Third", {"prompt": "prompt b"}), (None, {"prompt": "prompt c"}), ("First", {"prompt": "prompt a"}),
    ]  # fmt: skip
    assert [t for t, _ in await catalog.recent("luna", 1)] == ["Third"]
    assert await catalog.recent("nobody", 10) == []


async def test_adding_an_id_again_keeps_the_first(catalog: ContentCatalog) -> None:
    await catalog.add(track("a", "luna", 1, "First"))
    await catalog.add(track("a", "luna", 2, "Retried"))
    assert [t for t, _ in await catalog.recent("luna", 10)] == ["First"]
