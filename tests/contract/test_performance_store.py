"""One contract for every PerformanceStore: the memory twin, SQLite and PostgreSQL behave alike.

What a user cares about: a platform that revises yesterday's figure corrects it (the revenue to
date is not counted twice), the track's revenue in the inventory follows its figures (tiering and
the allocator read it), a batch with an unknown track changes nothing, and the totals per persona
and platform only count the tracks of the period.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from empire.agent.pools.memory import MemoryContentCatalog, MemoryPerformanceStore
from empire.agent.pools.performance import PerformanceFigure, PerformanceStore, PlatformTotals
from empire.agent.pools.publish import ContentMeta, NewContent
from empire.errors import ConfigError, NotFoundError
from empire.state.content import SqlContentCatalog
from empire.state.database import Database
from empire.state.performance import SqlPerformanceStore

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
D0 = date(2026, 6, 9)


@dataclass
class Env:
    store: PerformanceStore
    catalog: MemoryContentCatalog | SqlContentCatalog
    db: Database | None

    async def track(self, oid: str, persona: str, created: datetime = T0 - timedelta(days=3)) -> None:
        await self.catalog.add(NewContent(oid, 3, "sha256:" + "0" * 64, "hot", f"x/{oid}",
                                          ContentMeta(persona, oid, "active", created, {"genre": "lofi"})))  # fmt: skip

    async def audit_actions(self) -> list[str]:
        if self.db is None:
            assert isinstance(self.store, MemoryPerformanceStore)
            return [a["action"] for a in self.store.audit]
        from sqlalchemy import select

        from empire.state import tables as t

        async with self.db.connect() as conn:
            return [r.action for r in (await conn.execute(select(t.audit.c.action).order_by(t.audit.c.id))).all()]


@pytest.fixture
async def env(state_db: Database | None) -> AsyncIterator[Env]:
    if state_db is None:
        catalog = MemoryContentCatalog()
        yield Env(MemoryPerformanceStore(catalog), catalog, None)
    else:
        yield Env(SqlPerformanceStore(state_db), SqlContentCatalog(state_db), state_db)


def fig(oid: str, platform: str, day: date, revenue: float, views: int = 0, engagement: int = 0) -> PerformanceFigure:
    return PerformanceFigure(oid, platform, day, views, engagement, revenue)


async def test_a_revised_figure_replaces_the_earlier_one(env: Env) -> None:
    await env.track("trk-a", "gold")
    s = env.store
    assert await s.record([fig("trk-a", "youtube", D0, 2.0, 100, 7), fig("trk-a", "spotify", D0, 1.0, 40)],
                          actor="test", at=T0, source="api") == 2  # fmt: skip
    assert await s.revenue("trk-a") == pytest.approx(3.0)
    # the platform revises yesterday's figure, and reports today's: replaced, not added
    await s.record([fig("trk-a", "youtube", D0, 1.5, 120, 9), fig("trk-a", "youtube", D0 + timedelta(days=1), 0.5)],
                   actor="test", at=T0 + timedelta(days=1), source="pull")  # fmt: skip
    assert await s.revenue("trk-a") == pytest.approx(3.0)  # 1.5 + 0.5 + 1.0
    assert [(f.platform, f.period, f.views, f.revenue) for f in await s.figures("trk-a")] == [
        ("spotify", D0, 40, 1.0),
        ("youtube", D0, 120, 1.5),
        ("youtube", D0 + timedelta(days=1), 0, 0.5),
    ]
    # the same figure delivered twice (a retried pull) changes nothing
    await s.record([fig("trk-a", "spotify", D0, 1.0, 40)], actor="test", at=T0 + timedelta(days=1), source="csv")
    assert await s.revenue("trk-a") == pytest.approx(3.0)
    # within a batch, the last figure for a key wins
    await s.record([fig("trk-a", "spotify", D0, 9.0), fig("trk-a", "spotify", D0, 2.0)],
                   actor="test", at=T0 + timedelta(days=1), source="api")  # fmt: skip
    assert await s.revenue("trk-a") == pytest.approx(4.0)
    assert await env.audit_actions() == ["content.performance"] * 4


async def test_a_batch_with_an_unknown_track_or_a_bad_figure_changes_nothing(env: Env) -> None:
    await env.track("trk-a", "gold")
    s = env.store
    with pytest.raises(NotFoundError, match="trk-nope"):
        await s.record([fig("trk-a", "youtube", D0, 2.0), fig("trk-nope", "youtube", D0, 1.0)],
                       actor="test", at=T0, source="api")  # fmt: skip
    with pytest.raises(ConfigError, match="period"):
        await s.record([fig("trk-a", "youtube", D0, 2.0), fig("trk-a", "youtube", D0 + timedelta(days=5), 1.0)],
                       actor="test", at=T0, source="api")  # fmt: skip
    with pytest.raises(ConfigError, match="views"):
        await s.record([fig("trk-a", "youtube", D0, 2.0, views=-1)], actor="test", at=T0, source="api")
    assert await s.figures("trk-a") == [] and await s.revenue("trk-a") == 0.0
    assert await env.audit_actions() == []
    assert await s.record([], actor="test", at=T0, source="api") == 0


async def test_totals_per_persona_and_platform_count_the_period_s_tracks(env: Env) -> None:
    await env.track("trk-a", "gold")
    await env.track("trk-b", "gold")
    await env.track("trk-c", "blue")
    await env.track("trk-old", "gold", created=T0 - timedelta(days=60))
    await env.store.record([
        fig("trk-a", "youtube", D0, 2.0, 100, 5), fig("trk-a", "youtube", D0 - timedelta(days=1), 1.0, 50, 1),
        fig("trk-b", "youtube", D0, 0.5, 10), fig("trk-b", "tiktok", D0, 0.25, 1000, 80),
        fig("trk-c", "tiktok", D0, 4.0, 7), fig("trk-old", "youtube", D0, 100.0),
    ], actor="test", at=T0, source="csv")  # fmt: skip
    got = await env.store.totals(T0 - timedelta(days=30))
    assert got == {
        ("blue", "tiktok"): PlatformTotals(7, 0, 4.0, 1),
        ("gold", "tiktok"): PlatformTotals(1000, 80, 0.25, 1),
        ("gold", "youtube"): PlatformTotals(160, 6, 3.5, 2),
    }
