"""The periodic analytics pull, against a real loopback platform and a real SQLite state DB.

The platform's analytics endpoint (real HTTP on 127.0.0.1) answers per publication with its daily
figures in its own shape, mapped by the policy's dotted paths; it revises yesterday between two
pulls. What a user cares about: the figures land per track, platform and day, the revision replaces
the day (the track's revenue is not double counted), the key goes in the header, a platform error
skips the publication until the next pull, and the simulated platform reports without network.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.clock import FakeClock
from empire.agent.pools.analytics import AnalyticsPull
from empire.agent.pools.jobs import JobPriority
from empire.agent.pools.providers.http import HttpJobProvider
from empire.agent.pools.providers.simulated import SimulatedProvider
from empire.agent.pools.publish import publication_jobs
from empire.agent.tiering.inventory import ContentObject
from empire.policies.schema import Policy
from empire.state.database import Database
from empire.state.inventory import SqlInventory
from empire.state.jobs import SqlJobQueue
from empire.state.performance import SqlPerformanceStore
from fakes.server import serve_in_thread

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
TODAY, YESTERDAY = NOW.date(), NOW.date() - timedelta(days=1)


class Platform:
    """A loopback analytics endpoint: {"data": {"series": [{"day", "plays", "likes", "earned"}]}}."""

    def __init__(self) -> None:
        self.yesterday = 2.0  # revised between pulls
        self.fail: set[str] = set()
        self.auth: list[str | None] = []

    async def stats(self, request: Request) -> JSONResponse:
        self.auth.append(request.headers.get("authorization"))
        ext = request.path_params["ext"]
        if ext in self.fail:
            return JSONResponse({"error": "busy"}, status_code=503)
        series = [{"day": YESTERDAY.isoformat(), "plays": 100, "likes": 7, "earned": self.yesterday},
                  {"day": TODAY.isoformat(), "plays": 30, "likes": 1, "earned": 0.5}]  # fmt: skip
        return JSONResponse({"data": {"series": series}})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/stats/{ext:path}", self.stats)])


def policy(url: str) -> Policy:
    return Policy.model_validate({
        "providers": [
            {"name": "music", "accounts": [{"name": "a"}]},
            {"name": "tube", "kind": "http", "accounts": [{"name": "main", "api_key": {"env": "TUBE_KEY"}}],
             "http": {"submit_url": f"{url}/publish"},
             "analytics": {"url": f"{url}/stats/{{external_id}}", "items_path": "data.series", "date_path": "day",
                           "views_path": "plays", "engagement_path": "likes", "revenue_path": "earned",
                           "every": "1h"}},
            {"name": "sim", "accounts": [{"name": "a"}], "analytics": {}},
        ],
        "personas": [{"name": "luna", "genres": ["lofi"], "providers": ["music"], "platforms": ["tube", "sim"]}],
    })  # fmt: skip


async def published(db: Database, tracks: int) -> None:
    """`tracks` tracks in the inventory, each published on both platforms (succeeded publish jobs)."""
    inv, queue = SqlInventory(db), SqlJobQueue(db)
    for i in range(tracks):
        oid = f"trk-{i}"
        at = NOW - timedelta(days=2)
        await inv.register(ContentObject(oid, 10, "sha256:" + "0" * 64, "hot", oid, at, at, persona="luna"))
        jobs = publication_jobs(oid, "luna", oid, ("tube", "sim"), JobPriority.normal)
        await queue.enqueue(jobs, at)
    from sqlalchemy import update

    from empire.state import tables as t

    async with db.begin() as conn:  # the platforms accepted them: their ids, and done two days ago
        await conn.execute(update(t.jobs).values(state="succeeded", account="main", finished_at=NOW - timedelta(days=2),
                                                 provider_job_id=t.jobs.c.idempotency_key))  # fmt: skip


async def test_the_pull_records_each_day_and_a_revision_replaces_it(tmp_path: Path) -> None:
    platform = Platform()
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'empire.db'}")
    try:
        await published(db, 2)
        store = SqlPerformanceStore(db)
        with serve_in_thread(platform.app()) as url:
            pol = policy(url)
            tube = next(p for p in pol.providers if p.name == "tube")
            assert tube.http is not None
            adapters: dict[str, Any] = {
                "tube": HttpJobProvider("tube", tube.http, {"main": SecretStr("k-123")}),
                "sim": SimulatedProvider("sim", pol.providers[2].simulated, FakeClock(NOW)),
            }
            pull = AnalyticsPull(lambda: pol, SqlJobQueue(db), store, lambda: adapters)
            platform.fail = {"pub/trk-1/tube"}
            first = await pull(NOW)
            assert first["tube"] == {"publications": 1, "figures": 2, "errors": 1}
            assert first["sim"]["publications"] == 2 and first["sim"]["errors"] == 0
            assert set(platform.auth) == {"Bearer k-123"}  # the account's key, in the header
            tube_figs = [(f.period, f.views, f.engagement, f.revenue) for f in await store.figures("trk-0")
                         if f.platform == "tube"]  # fmt: skip
            assert tube_figs == [(YESTERDAY, 100, 7, 2.0), (TODAY, 30, 1, 0.5)]
            sim_before = sum(f.revenue for f in await store.figures("trk-0") if f.platform == "sim")
            assert await store.revenue("trk-0") == pytest.approx(2.5 + sim_before)

            assert await pull(NOW + timedelta(minutes=30)) == {}  # every 1 h (and sim every 6 h): not due
            platform.yesterday, platform.fail = 1.25, set()  # the platform revises yesterday
            second = await pull(NOW + timedelta(hours=1))
            assert second["tube"] == {"publications": 2, "figures": 4, "errors": 0} and "sim" not in second
            await adapters["tube"].aclose()
        # replaced, not added: 1.25 + 0.5 on tube, the simulated figures unchanged
        assert await store.revenue("trk-0") == pytest.approx(1.75 + sim_before)
        assert await store.revenue("trk-1") > 1.75  # pulled this time
        assert pull.last["platforms"]["tube"]["publications"] == 2
    finally:
        await db.close()
