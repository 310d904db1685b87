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


async def test_published_since_is_the_personas_published_tracks_with_their_genre_and_provider(
    catalog: ContentCatalog,
) -> None:
    def meta(genre: str | None) -> dict[str, object]:
        return {"prompt": "p", "provider": "music", **({"genre": genre} if genre else {})}

    for oid, persona, minutes, status, genre in (("a", "luna", 1, "active", "lofi"), ("b", "luna", 3, "active", None),
                                                 ("c", "luna", 2, "quarantined", "lofi"), ("d", "grit", 4, "active", "trap"),
                                                 ("e", "luna", -5, "active", "lofi")):  # fmt: skip
        await catalog.add(NewContent(oid, 100, SUM, "hot", f"hot/{oid}",
                                     ContentMeta(persona, None, status, T0 + timedelta(minutes=minutes), meta(genre))))  # fmt: skip
    got = sorted(await catalog.published_since(T0, ["luna"]), key=lambda t: t.created_at)
    # the quarantined track was never published; the one before `since` and grit's are not asked for
    assert [(t.persona, t.genre, t.provider, t.revenue) for t in got] == [("luna", "lofi", "music", 0.0),
                                                                         ("luna", "", "music", 0.0)]  # fmt: skip
    assert got[0].created_at == T0 + timedelta(minutes=1)
    assert await catalog.published_since(T0, []) == []
