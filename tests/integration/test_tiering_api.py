"""The ingest endpoint against a real database: bearer auth, strict bodies, all-or-nothing, audited.

The app is the agent's (`build_app` with the API's gate); the caller is the legacy ingest token
(`EMPIRE_INGEST_TOKEN`), which reaches these two endpoints only."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette

from empire.agent.api.auth import Authenticator
from empire.agent.api.guard import Gate
from empire.agent.api.memory import MemoryTokenStore
from empire.agent.api.spec import api_routes
from empire.agent.clock import FakeClock
from empire.agent.daemon import INGEST_PATHS
from empire.agent.http import AppContext, build_app
from empire.agent.monitor import Monitor
from empire.agent.tiering.api import endpoints
from empire.agent.tiering.inventory import ContentObject, Inventory
from empire.policies.storage import StoragePolicy
from empire.state import tables as t
from empire.state.inventory import SqlInventory
from empire.state.store import SqlStateStore

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TOKEN = "s3cr3t-ingest-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def app_for(inv: Inventory, token: str | None = TOKEN, max_body: int = 4096) -> Starlette:
    clock = FakeClock(NOW)
    auth = Authenticator(MemoryTokenStore(), clock.now, legacy_ingest=token, ingest_paths=INGEST_PATHS)
    gate = Gate(auth, SqlStateStore(inv.db).audit, clock.now)
    routes = api_routes(endpoints(inv, clock=clock, policy=lambda: StoragePolicy(access_half_life="7d")), max_body)
    return build_app(AppContext(Monitor(), max_body_bytes=max_body, gate=gate), routes)


@pytest.fixture
async def inv(database) -> Inventory:
    inv = SqlInventory(database)
    for oid in ("track-1", "track-2"):
        await inv.register(ContentObject(id=oid, size=10, checksum="sha256:" + "a" * 64, tier="hot", location=oid,
                                         created_at=NOW - timedelta(days=3), tier_since=NOW - timedelta(days=3)))  # fmt: skip
    return inv


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5555)), base_url="http://t")


async def audits(inv: Inventory, refused: bool = False) -> list[tuple[str, str, str]]:
    """The rows the inventory wrote with each change, or (`refused`) the API gate's rows for the
    writes that changed nothing, with the status they got."""
    async with inv.db.connect() as conn:
        rows = (await conn.execute(select(t.audit).where(t.audit.c.action != "content.register"))).all()
    if refused:
        return [(r.actor, r.action, r.details["status"]) for r in rows if "status" in r.details]
    return [(r.actor, r.action, r.subject) for r in rows if "status" not in r.details]


async def test_access_events_need_the_bearer_token(inv: Inventory) -> None:
    body = {"events": [{"id": "track-1", "count": 2}]}
    async with client(app_for(inv)) as c:
        r = await c.post("/v1/content/access", json=body)
        assert r.status_code == 401 and "authentication required" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = await c.post("/v1/content/access", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json() == {"error": "invalid bearer token"}
        r = await c.post("/v1/content/access", json=body, headers={"Authorization": f"Basic {TOKEN}"})
        assert r.status_code == 401
        assert (await inv.get("track-1")).access_score == 0
        r = await c.post("/v1/content/access", json=body, headers=AUTH)
        assert r.status_code == 200 and r.json() == {"updated": 1}
    obj = await inv.get("track-1")
    assert obj.access_score == 2 and obj.last_access_at == NOW
    assert await audits(inv) == [("ingest-token", "content.access", "object/track-1")]
    assert await audits(inv, refused=True) == []  # the anonymous and bad-token calls are not written down


async def test_without_a_configured_token_every_call_is_refused(inv: Inventory) -> None:
    async with client(app_for(inv, token=None)) as c:
        r = await c.post("/v1/content/access", json={"events": [{"id": "track-1"}]}, headers=AUTH)
    assert r.status_code == 401 and r.json()["error"] == "invalid bearer token"


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "malformed JSON"),
        (b'{"events": []}', {"content-type": "application/json"}, 422, "events"),
        (b'{"events": [{"id": "track-1", "cnt": 1}]}', {"content-type": "application/json"}, 422, "events.0.cnt"),
        (b'{"events": [{"id": "track-1", "at": "2026-01-01T00:00:00"}]}', {"content-type": "application/json"}, 422,
         "timezone"),
        (b'{"events": [{"id": "track-1", "count": 0}]}', {"content-type": "application/json"}, 422, "count"),
        (b'{"events": [{"id": "track-1", "at": "2027-01-01T00:00:00Z"}]}', {"content-type": "application/json"}, 422,
         "future"),
        (b"id,count\ntrack-1,1", {"content-type": "text/csv"}, 415, "application/json"),
        (b'{"events": [' + b'{"id": "track-1"},' * 400 + b'{"id": "track-1"}]}', {"content-type": "application/json"},
         413, "larger than 4096"),
    ],
)  # fmt: skip
async def test_malformed_or_oversized_bodies_get_a_clear_4xx(inv, content, headers, status, message) -> None:
    async with client(app_for(inv)) as c:
        r = await c.post("/v1/content/access", content=content, headers={**AUTH, **headers})
    assert r.status_code == status, r.text
    assert message in r.text
    assert TOKEN not in r.text
    assert await audits(inv) == []
    assert await audits(inv, refused=True) == [
        ("ingest-token", "content.access", status)
    ]  # who tried, and what came of it


J = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("path", "content", "status", "message"),
    [
        ("access", b'{"events": [{"id": "track-1", "count": ' + b"9" * 5000 + b"}]}", 422,
         "events.0.count: integer of 5000 digits"),
        ("revenue", b'{"figures": [{"id": "track-1", "amount": ' + b"9" * 5000 + b"}]}", 422,
         "figures.0.amount: integer of 5000 digits"),
        ("access", b"[" * 200_000 + b"]" * 200_000, 400, "nested deeper than"),
        ("access", b'{"events": [{"id": "track-1", "at": "0001-01-01T00:00:00+01:00"}]}', 422,
         "events.0.at: 0001-01-01T00:00:00+01:00 is before 1970-01-01"),
        ("access", b'{"events": [{"id": "track-1", "at": "0001-01-01T00:00:00Z"}]}', 422, "events.0.at"),
        ("revenue", b'{"figures": [{"id": "track-1", "amount": 1e999}]}', 422, "figures.0.amount: number out of range"),
        ("revenue", b'{"figures": [{"id": "track-1", "amount": NaN}]}', 422, "figures.0.amount"),
        ("revenue", b'{"figures": [{"id": "track-1", "amount": 1.7e308, "mode": "add"}]}', 422,
         "figures.0.amount: must be a finite number of at most 1,000,000,000,000"),
        ("access", b'{"events": [{"id": "track\\u0000"}]}', 422, "events.0.id: text contains a NUL"),
        ("access", b'{"events": [{"id": "\\ud800"}]}', 422, "events.0.id: text contains an unpaired surrogate"),
    ],
)  # fmt: skip
async def test_values_no_store_can_hold_get_a_4xx_naming_the_field(inv, path, content, status, message) -> None:
    """Each of these answered 500 (a traceback in the log) or stored inf before."""
    async with client(app_for(inv, max_body=1_048_576)) as c:
        r = await c.post(f"/v1/content/{path}", content=content, headers={**AUTH, **J})
    assert r.status_code == status, r.text
    assert message in r.json()["error"] and "\n" not in r.json()["error"]
    assert await audits(inv) == []
    obj = await inv.get("track-1")
    assert (obj.access_score, obj.revenue, obj.last_access_at) == (0, 0, None)


async def test_revenue_added_up_past_the_bound_is_refused_whole(inv: Inventory) -> None:
    """Two in-bound additions whose total is not: 422, and neither is stored (no inf, ever)."""
    add = {"id": "track-1", "amount": 9e11, "mode": "add"}
    async with client(app_for(inv)) as c:
        r = await c.post("/v1/content/revenue", headers=AUTH, json={"figures": [{"id": "track-2", "amount": 5}, add]})
        assert r.status_code == 200
        r = await c.post("/v1/content/revenue", headers=AUTH, json={"figures": [{"id": "track-2", "amount": 7}, add]})
    assert r.status_code == 422 and "revenue of track-1 would reach 1.8e+12" in r.json()["error"]
    assert [(await inv.get(i)).revenue for i in ("track-1", "track-2")] == [9e11, 5]
    assert len(await audits(inv)) == 1


async def test_a_batch_with_an_unknown_id_changes_nothing(inv: Inventory) -> None:
    body = {"events": [{"id": "track-1"}, {"id": "nope"}]}
    async with client(app_for(inv)) as c:
        r = await c.post("/v1/content/access", json=body, headers=AUTH)
        assert r.status_code == 404 and "nope" in r.json()["error"] and "nothing was changed" in r.json()["error"]
        r = await c.post("/v1/content/revenue", json={"figures": [{"id": "nope", "amount": 1}]}, headers=AUTH)
        assert r.status_code == 404
    assert (await inv.get("track-1")).access_score == 0
    assert await audits(inv) == []


async def test_revenue_figures_set_or_add(inv: Inventory) -> None:
    async with client(app_for(inv)) as c:
        r = await c.post("/v1/content/revenue", headers=AUTH, json={"figures": [
            {"id": "track-1", "amount": 10.0}, {"id": "track-2", "amount": 1.5, "mode": "add"}]})  # fmt: skip
        assert r.status_code == 200 and r.json() == {"updated": 2}
        r = await c.post("/v1/content/revenue", headers=AUTH, json={"figures": [{"id": "track-1", "amount": -1}]})
        assert r.status_code == 422 and "negative" in r.json()["error"]
    assert [(await inv.get(i)).revenue for i in ("track-1", "track-2")] == [10.0, 1.5]
    assert await audits(inv) == [("ingest-token", "content.revenue", "objects/2")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_over_a_real_socket(inv: Inventory) -> None:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app_for(inv), host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
                await anyio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            denied = await c.post("/v1/content/access", json={"events": [{"id": "track-2"}]})
            ok = await c.post("/v1/content/access", json={"events": [{"id": "track-2", "count": 3}]}, headers=AUTH)
        server.should_exit = True
    assert denied.status_code == 401
    assert ok.status_code == 200 and ok.json() == {"updated": 1}
    assert (await inv.get("track-2")).access_score == 3
    assert (await audits(inv))[0] == ("ingest-token", "content.access", "object/track-2")
