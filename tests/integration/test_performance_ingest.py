"""Performance figures in, against a real database: the ingest endpoint (write token, audited, all or
nothing, a revised figure replaces the day's), `GET /v1/content/{id}` showing the track's revenue and
its publications, and `empire content import-metrics` (the same file twice changes nothing)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import insert, select
from starlette.applications import Starlette

from empire.agent.api.auth import Authenticator, Scope, TokenRecord, new_token
from empire.agent.api.guard import Gate
from empire.agent.api.memory import MemoryTokenStore
from empire.agent.api.spec import api_routes
from empire.agent.clock import FakeClock
from empire.agent.http import AppContext, build_app
from empire.agent.monitor import Monitor
from empire.agent.pools.performance_api import endpoints as performance_endpoints
from empire.agent.tiering.api import endpoints as content_endpoints
from empire.agent.tiering.inventory import ContentObject
from empire.cli import main
from empire.policies.storage import StoragePolicy
from empire.state import tables as t
from empire.state.database import Database
from empire.state.inventory import SqlInventory
from empire.state.performance import SqlPerformanceStore
from empire.state.publications import publications
from empire.state.store import SqlStateStore

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
DAY = date(2026, 6, 9)


async def app_for(db: Database) -> tuple[Starlette, dict[str, dict[str, str]]]:
    clock = FakeClock(NOW)
    tokens = MemoryTokenStore()
    headers = {}
    for name, scope in (("ingest", Scope.write), ("viewer", Scope.read)):
        text, token_id, digest = new_token()
        await tokens.add(TokenRecord(token_id, name, (scope,), digest, NOW, "test"))
        headers[name] = {"Authorization": f"Bearer {text}"}
    gate = Gate(Authenticator(tokens, clock.now), SqlStateStore(db).audit, clock.now)
    inv = SqlInventory(db)
    routes = [
        *api_routes(content_endpoints(inv, clock=clock, policy=lambda: StoragePolicy(),
                                      publications=lambda oid: publications(db, oid)), 65536),
        *api_routes(performance_endpoints(SqlPerformanceStore(db), clock), 65536),
    ]  # fmt: skip
    return build_app(AppContext(Monitor(), max_body_bytes=65536, gate=gate), routes), headers


async def seed(db: Database) -> None:
    inv = SqlInventory(db)
    for oid in ("trk-1", "trk-2"):
        await inv.register(ContentObject(id=oid, size=10, checksum="sha256:" + "a" * 64, tier="hot", location=oid,
                                         created_at=NOW - timedelta(days=3), tier_since=NOW - timedelta(days=3),
                                         persona="gold"))  # fmt: skip
    async with db.begin() as conn:  # trk-1 went out on two platforms; one publish is still queued
        for platform, state, ext in (("youtube", "succeeded", "yt-123"), ("spotify", "queued", None)):
            await conn.execute(insert(t.jobs).values(
                idempotency_key=f"pub/trk-1/{platform}", persona="gold", provider=platform, priority=1, state=state,
                attempts=1, not_before=NOW, provider_job_id=ext, request={"object_id": "trk-1"},
                result={"publication": {"url": f"https://{platform}.example/{ext}"}} if ext else None,
                created_at=NOW, updated_at=NOW, finished_at=NOW if ext else None,
            ))  # fmt: skip


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_ingest_replaces_a_revised_day_and_the_track_shows_revenue_and_publications(database: Database) -> None:
    await seed(database)
    app, h = await app_for(database)
    day = DAY.isoformat()
    async with client(app) as c:
        body = {"figures": [{"id": "trk-1", "platform": "youtube", "date": day, "views": 100, "revenue": 2.0},
                            {"id": "trk-1", "platform": "spotify", "date": day, "revenue": 0.5}]}  # fmt: skip
        assert (await c.post("/v1/performance", json=body)).status_code == 401
        assert (await c.post("/v1/performance", json=body, headers=h["viewer"])).status_code == 403
        r = await c.post("/v1/performance", json=body, headers=h["ingest"])
        assert r.status_code == 200 and r.json() == {"recorded": 2}
        # youtube revises yesterday's figure: replaced, not added
        revised = {"figures": [{"id": "trk-1", "platform": "youtube", "date": day, "views": 140, "revenue": 1.25}]}
        assert (await c.post("/v1/performance", json=revised, headers=h["ingest"])).status_code == 200
        # one unknown track: nothing of the batch is applied
        bad = {"figures": [{"id": "trk-2", "platform": "youtube", "date": day, "revenue": 7.0},
                           {"id": "trk-nope", "platform": "youtube", "date": day, "revenue": 1.0}]}  # fmt: skip
        r = await c.post("/v1/performance", json=bad, headers=h["ingest"])
        assert r.status_code == 404 and "trk-nope" in r.json()["error"]
        future = {"figures": [{"id": "trk-2", "platform": "youtube", "date": "2026-06-12", "revenue": 1.0}]}
        r = await c.post("/v1/performance", json=future, headers=h["ingest"])
        assert r.status_code == 422 and r.json()["details"][0]["path"] == "figures.0.date"
        shown = (await c.get("/v1/content/trk-1", headers=h["viewer"])).json()
        other = (await c.get("/v1/content/trk-2", headers=h["viewer"])).json()
    assert shown["revenue"] == pytest.approx(1.75)
    assert [(p["platform"], p["state"], p["external_id"]) for p in shown["publications"]] == [
        ("spotify", "queued", None), ("youtube", "succeeded", "yt-123"),
    ]  # fmt: skip
    assert other["revenue"] == 0.0 and other["publications"] == []
    async with database.connect() as conn:
        rows = (await conn.execute(select(t.audit.c.actor, t.audit.c.action)
                                   .where(t.audit.c.action == "content.performance"))).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [("ingest", "content.performance")] * 2


def test_import_metrics_from_csv_twice_changes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "t.wav").write_bytes(b"\x01" * 100)
    assert main(["content", "add", str(tmp_path / "t.wav"), "--id", "trk-1", "--persona", "gold"]) == 0
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    csv = tmp_path / "youtube.csv"
    csv.write_text("id,platform,date,views,engagement,revenue\n"
                   f"trk-1,youtube,{yesterday},100,4,1.5\ntrk-1,youtube,{today},20,,0.25\n")  # fmt: skip
    capsys.readouterr()
    assert main(["content", "import-metrics", str(csv)]) == 0
    assert "2 figures for 1 tracks" in capsys.readouterr().out
    assert main(["content", "import-metrics", str(csv)]) == 0  # again: the same rows, replaced
    csv.write_text(f"id,platform,date,revenue\ntrk-1,youtube,{yesterday},1.0\n")  # the platform revised it
    assert main(["content", "import-metrics", str(csv)]) == 0
    capsys.readouterr()
    assert main(["content", "show", "trk-1", "--format", "json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["revenue"] == pytest.approx(1.25)
    csv.write_text(f"id,platform,date,revenue\ntrk-1,youtube,{today},x\n")
    assert main(["content", "import-metrics", str(csv)]) != 0
    assert "youtube.csv:2" in capsys.readouterr().err

    async def figures() -> list[object]:
        db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'empire.db'}")
        try:
            return await SqlPerformanceStore(db).figures("trk-1")
        finally:
            await db.close()

    assert [(f.period, f.views, f.revenue) for f in anyio.run(figures)] == [(yesterday, 0, 1.0), (today, 20, 0.25)]
